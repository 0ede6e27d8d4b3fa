package session

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func rec(i int) []byte { return fmt.Appendf(nil, "receipt %d %s", i, strings.Repeat("x", i%97)) }

func appendAll(t *testing.T, l *Log, recs [][]byte) {
	t.Helper()
	for _, r := range recs {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
}

func wantRecords(t *testing.T, l *Log, want [][]byte) {
	t.Helper()
	got, err := l.Records()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("%d records, want %d (or contents differ)", len(got), len(want))
	}
	if l.Len() != len(want) {
		t.Fatalf("Len %d, want %d", l.Len(), len(want))
	}
}

func mustOpen(t *testing.T, path string) *Log {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLogAppendReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "receipts.log")
	l := mustOpen(t, path)
	wantRecords(t, l, nil)
	recs := [][]byte{rec(1), rec(2), bytes.Repeat([]byte{0}, 3)}
	appendAll(t, l, recs)
	wantRecords(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(rec(4)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	l = mustOpen(t, path)
	wantRecords(t, l, recs)
	if l.Dropped() != 0 {
		t.Fatalf("dropped %d from a whole log", l.Dropped())
	}
	appendAll(t, l, [][]byte{rec(5)})
	l.Close()
	wantRecords(t, mustOpen(t, path), append(recs, rec(5)))
}

func TestLogRecordSize(t *testing.T) {
	l := mustOpen(t, filepath.Join(t.TempDir(), "r.log"))
	for _, n := range []int{0, MaxRecord + 1} {
		if err := l.Append(make([]byte, n)); !errors.Is(err, ErrRecordSize) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if err := l.Append(make([]byte, MaxRecord)); err != nil {
		t.Fatalf("MaxRecord bytes: %v", err)
	}
}

// writeLog writes a log of recs and returns its bytes.
func writeLog(t *testing.T, path string, recs [][]byte) []byte {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, recs)
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLogTornTail(t *testing.T) {
	dir := t.TempDir()
	good := [][]byte{rec(1), rec(2)}
	whole := writeLog(t, filepath.Join(dir, "whole"), append(slices.Clone(good), rec(300)))
	last := encode(rec(300))
	goodLen := len(whole) - len(last)
	for cut := 1; cut < len(last); cut++ {
		path := filepath.Join(dir, fmt.Sprint("torn", cut))
		if err := os.WriteFile(path, whole[:goodLen+cut], 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path)
		if err != nil {
			t.Fatalf("cut after %d bytes: %v", cut, err)
		}
		if l.Dropped() != int64(cut) {
			t.Fatalf("cut after %d bytes: dropped %d", cut, l.Dropped())
		}
		wantRecords(t, l, good)
		if fi, _ := os.Stat(path); fi.Size() != int64(goodLen) {
			t.Fatalf("file not truncated: %d bytes", fi.Size())
		}
		appendAll(t, l, [][]byte{rec(7)})
		l.Close()
		l = mustOpen(t, path)
		wantRecords(t, l, append(slices.Clone(good), rec(7)))
		l.Close()
	}
}

func TestLogTornShapes(t *testing.T) {
	dir := t.TempDir()
	good := [][]byte{rec(1), rec(2)}
	base := writeLog(t, filepath.Join(dir, "base"), good)
	lastBad := slices.Clone(encode(rec(3)))
	lastBad[len(lastBad)-1] ^= 1
	cases := []struct {
		name string
		tail []byte
	}{
		{"zeros the file system allocated", make([]byte, 4096)},
		{"last record fails its checksum", lastBad},
		{"incomplete length", []byte{0x80, 0x80}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(i))
			if err := os.WriteFile(path, append(slices.Clone(base), tc.tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			l := mustOpen(t, path)
			if l.Dropped() != int64(len(tc.tail)) {
				t.Fatalf("dropped %d, want %d", l.Dropped(), len(tc.tail))
			}
			wantRecords(t, l, good)
		})
	}
	t.Run("torn header", func(t *testing.T) {
		path := filepath.Join(dir, "header")
		if err := os.WriteFile(path, []byte(logMagic[:3]), 0o600); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, path)
		wantRecords(t, l, nil)
		appendAll(t, l, good)
		l.Close()
		wantRecords(t, mustOpen(t, path), good)
	})
}

func TestLogCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	recs := [][]byte{rec(1), rec(2), rec(3)}
	whole := writeLog(t, filepath.Join(dir, "whole"), recs)
	first := len(logMagic)
	cases := []struct {
		name string
		edit func(b []byte)
	}{
		{"payload bit flipped", func(b []byte) { b[first+6] ^= 0x10 }},
		{"checksum changed", func(b []byte) { b[first+2] ^= 1 }},
		{"length changed", func(b []byte) { b[first]++ }},
		{"length zeroed", func(b []byte) { b[first] = 0 }},
		{"length too large", func(b []byte) { copy(b[first:], []byte{0xff, 0xff, 0x7f}) }},
		{"bad header", func(b []byte) { b[0] = 'X' }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(i))
			b := slices.Clone(whole)
			tc.edit(b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := Open(path)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, %v; want ErrCorrupt", l, err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
				t.Fatal("Open changed a corrupt log")
			}
		})
	}
}

func TestLogManyRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "many")
	l := mustOpen(t, path)
	var recs [][]byte
	for i := range 3000 {
		r := rec(i)
		if i%500 == 0 {
			r = bytes.Repeat([]byte{byte(i)}, MaxRecord-i%3)
		}
		recs = append(recs, r)
	}
	appendAll(t, l, recs)
	l.Close()
	wantRecords(t, mustOpen(t, path), recs)
}

func TestLogConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conc")
	l := mustOpen(t, path)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := l.Append(rec(g*1000 + i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	if n := mustOpen(t, path).Len(); n != 400 {
		t.Fatalf("%d records", n)
	}
}

// faultyFile writes at most budget more bytes (the rest of a write fails as a full disk does) and
// can fail Sync and Truncate.
type faultyFile struct {
	*os.File
	mu                  sync.Mutex
	budget              int
	failSync, failTrunc bool
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(p) <= f.budget {
		f.budget -= len(p)
		return f.File.WriteAt(p, off)
	}
	n, err := f.File.WriteAt(p[:f.budget], off)
	f.budget -= n
	if err == nil {
		err = syscall.ENOSPC
	}
	return n, err
}

func (f *faultyFile) Sync() error {
	if f.failSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(n int64) error {
	if f.failTrunc {
		return syscall.EIO
	}
	return f.File.Truncate(n)
}

func openFaulty(t *testing.T, path string, budget int) (*Log, *faultyFile) {
	t.Helper()
	var ff *faultyFile
	l, err := open(path, func(f *os.File) file {
		ff = &faultyFile{File: f, budget: budget}
		return ff
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, ff
}

func TestLogDiskFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full")
	l, ff := openFaulty(t, path, len(logMagic)+len(encode(rec(1)))+10)
	appendAll(t, l, [][]byte{rec(1)})
	err := l.Append(rec(2)) // 10 bytes fit, the rest does not
	if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrLogBroken) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != int64(len(logMagic)+len(encode(rec(1)))) {
		t.Fatalf("the partial record was not undone: %d bytes", fi.Size())
	}
	// Space comes back: the log goes on.
	ff.mu.Lock()
	ff.budget = 1 << 20
	ff.mu.Unlock()
	appendAll(t, l, [][]byte{rec(3)})
	wantRecords(t, l, [][]byte{rec(1), rec(3)})
	l.Close()
	l2 := mustOpen(t, path)
	if l2.Dropped() != 0 {
		t.Fatalf("dropped %d", l2.Dropped())
	}
	wantRecords(t, l2, [][]byte{rec(1), rec(3)})
}

func TestLogPartialWriteNotUndone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "torn")
	l, ff := openFaulty(t, path, len(logMagic)+len(encode(rec(1)))+5)
	appendAll(t, l, [][]byte{rec(1)})
	ff.failTrunc = true
	if err := l.Append(rec(2)); !errors.Is(err, ErrLogBroken) {
		t.Fatalf("append: %v", err)
	}
	if err := l.Append(rec(3)); !errors.Is(err, ErrLogBroken) {
		t.Fatalf("append after a break: %v", err)
	}
	l.Close()
	l2 := mustOpen(t, path)
	if l2.Dropped() != 5 {
		t.Fatalf("dropped %d, want the 5 torn bytes", l2.Dropped())
	}
	wantRecords(t, l2, [][]byte{rec(1)})
}

func TestLogFailedSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync")
	l, ff := openFaulty(t, path, 1<<20)
	appendAll(t, l, [][]byte{rec(1)})
	ff.failSync = true
	if err := l.Append(rec(2)); !errors.Is(err, ErrLogBroken) {
		t.Fatalf("append with a failing fsync: %v", err)
	}
	if l.Len() != 1 {
		t.Fatalf("Len %d after a failed append", l.Len())
	}
	l.Close()
	if _, err := mustOpen(t, path).Records(); err != nil {
		t.Fatal(err)
	}
}

func FuzzLogOpen(f *testing.F) {
	whole := encode(rec(1))
	whole = append(whole, encode(rec(2))...)
	f.Add(true, whole)
	f.Add(true, whole[:len(whole)-3])
	f.Add(true, append(slices.Clone(whole), 0, 0, 0))
	f.Add(true, []byte{0x05, 1, 2, 3, 4, 'a', 'b'})
	f.Add(false, []byte(logMagic[:4]))
	f.Add(false, []byte("not a log at all"))
	dir := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, withMagic bool, data []byte) {
		n++
		path := filepath.Join(dir, fmt.Sprint(n))
		defer os.Remove(path)
		orig := data
		if withMagic {
			orig = append([]byte(logMagic), data...)
		}
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path)
		after, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(after, orig) {
				t.Fatal("Open changed a log it refused")
			}
			return
		}
		defer l.Close()
		recs, err := l.Records()
		if err != nil {
			t.Fatalf("Records after a clean Open: %v", err)
		}
		// What is left is exactly the header and the records, each re-encoded with its checksum: no
		// record with a bad checksum came back, and only a tail was cut.
		rebuilt := []byte(logMagic)
		for _, r := range recs {
			rebuilt = append(rebuilt, encode(r)...)
		}
		if !bytes.Equal(after, rebuilt) {
			t.Fatalf("file after Open is not header + records")
		}
		if len(orig) >= len(logMagic) {
			if !bytes.HasPrefix(orig, after) || l.Dropped() != int64(len(orig)-len(after)) {
				t.Fatalf("cut more than a tail: dropped %d of %d", l.Dropped(), len(orig))
			}
		}
	})
}
