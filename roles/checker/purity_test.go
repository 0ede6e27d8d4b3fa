package checker

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// The checking methods are pure logic: no network, no processes, no files, no clock of their own
// and no global randomness. Sessions, sockets and clocks belong to the node's checker loop.
func TestCheckingMethodsArePure(t *testing.T) {
	files := []string{"challenge.go", "config.go", "content.go", "telemetry.go", "verdict.go"}
	forbiddenImports := []string{"net", "os", "os/exec", "math/rand", "crypto/rand", "github.com/rendermesh/rendermesh/render",
		"github.com/pion/", "github.com/libp2p/"}
	forbiddenCalls := map[string]bool{"time.Now": true, "time.Sleep": true, "time.Since": true, "time.Until": true,
		"time.After": true, "time.Tick": true, "time.NewTimer": true, "time.NewTicker": true,
		// math/rand/v2's global source; a Rand made from an injected Source is fine.
		"rand.Int": true, "rand.IntN": true, "rand.Int64": true, "rand.Uint32": true, "rand.Uint64": true,
		"rand.Float64": true, "rand.N": true, "rand.Perm": true, "rand.Shuffle": true}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbiddenImports {
				if path == bad || (strings.HasSuffix(bad, "/") && strings.HasPrefix(path, bad)) {
					t.Errorf("%s imports %s", name, path)
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && forbiddenCalls[pkg.Name+"."+sel.Sel.Name] {
				t.Errorf("%s: %s uses %s.%s: take times from the caller", name, fset.Position(sel.Pos()), pkg.Name, sel.Sel.Name)
			}
			return true
		})
	}
}
