package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// adminServer serves /healthz, /metrics and the operator API on the admin listener.
type adminServer struct {
	ln  net.Listener
	srv *http.Server
}

// Status is what /v1/status reports.
type Status struct {
	PeerID       string            `json:"peer_id"`
	Version      string            `json:"version"`
	Addrs        []string          `json:"addrs"`
	Roles        []string          `json:"roles"`
	Peers        int               `json:"peers"`
	RoutingTable int               `json:"routing_table"`
	Container    *container.Status `json:"container,omitempty"`
	Checks       *ChecksStatus     `json:"checks,omitempty"`
}

// ChecksStatus is what /v1/status says about checks: this node's work as a checker and the
// attestation ledger it keeps.
type ChecksStatus struct {
	Checker       bool `json:"checker"` // runs the checker role
	Licensed      bool `json:"licensed"`
	Checks        int  `json:"checks"` // attestations published
	Passed        int  `json:"passed"`
	Failed        int  `json:"failed"`
	Inconclusive  int  `json:"inconclusive"`
	Confirmations int  `json:"confirmations"`
	Overloaded    int  `json:"overloaded"`
	OwnLimit      int  `json:"own_limit"` // checks deferred for this node's own resource limit
	// SessionSamples and SessionRefused count consumers' session statistics samples taken and
	// refused (docs/CHECKERS.md, "Checks during sessions").
	SessionSamples int    `json:"session_samples"`
	SessionRefused int    `json:"session_samples_refused"`
	Epoch          uint64 `json:"epoch"`
	Attestations   int    `json:"epoch_attestations"` // counted in the current epoch
	PrevRoot       string `json:"previous_epoch_root"`
	Excluded       int    `json:"excluded_containers"`
	// Standing is this container's standing in the ledger (containers only).
	Standing string `json:"standing,omitempty"`
}

// Status reports the node's state.
func (n *Node) Status() Status {
	st := Status{PeerID: n.net.ID().String(), Version: Version, Roles: n.cfg.Roles,
		Peers: len(n.net.Host().Network().Peers()), RoutingTable: n.net.RoutingTableSize()}
	for _, a := range n.net.Addrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	if n.cont != nil {
		cs := n.cont.Status()
		st.Container = &cs
	}
	if c := n.Checks(); c != nil {
		e := n.ep.tr.Schedule().Epoch(n.opts.Clock.Now())
		cs := &ChecksStatus{Checker: c.Role, Licensed: n.chk.elig.Eligible(n.net.ID(), e),
			Checks: c.Stats.Checks, Passed: c.Stats.Passed, Failed: c.Stats.Failed, Inconclusive: c.Stats.Inconclusive,
			Confirmations: c.Stats.Confirmations, Overloaded: c.Stats.Overloaded, OwnLimit: c.Stats.OwnLimit,
			SessionSamples: c.Stats.SessionSamples, SessionRefused: c.Stats.SessionRefused,
			Epoch: e, Attestations: len(c.Ledger.Leaves(e)), Excluded: len(c.Excluded)}
		if e > 0 {
			r := c.Ledger.Root(e - 1)
			cs.PrevRoot = hex.EncodeToString(r[:])
		}
		if n.cont != nil {
			cs.Standing = string(n.Standing(n.net.ID()).Standing)
		}
		st.Checks = cs
	}
	return st
}

func startAdmin(addr string, n *Node) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w: choose another --admin address, or --admin '' to disable it", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.opts.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, n.Status()) })
	mux.HandleFunc("POST /v1/container/lock", n.operatorHandler((*container.Container).Lock))
	mux.HandleFunc("POST /v1/container/unlock", n.operatorHandler((*container.Container).Unlock))
	mux.HandleFunc("POST /v1/container/fee", n.feeHandler)
	mux.HandleFunc("GET /v1/epochs/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		data, err := n.EpochCheckpoint()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, stateResponse{Error: err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
	n.registerWeb(mux)
	a := &adminServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go a.srv.Serve(ln)
	return a, nil
}

type stateResponse struct {
	State string `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

// operatorHandler runs an operator action on the container; only callers on loopback may.
func (n *Node) operatorHandler(action func(*container.Container, context.Context) (pb.ContainerState, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().IsLoopback() {
			writeJSON(w, http.StatusForbidden, stateResponse{Error: "operator actions are allowed from loopback only"})
			return
		}
		if n.cont == nil {
			writeJSON(w, http.StatusNotFound, stateResponse{Error: "this node does not run the container role"})
			return
		}
		s, err := action(n.cont, r.Context())
		switch {
		case errors.Is(err, container.ErrTransition):
			writeJSON(w, http.StatusConflict, stateResponse{State: container.StateName(s), Error: err.Error()})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, stateResponse{State: container.StateName(s), Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, stateResponse{State: container.StateName(s)})
		}
	}
}

type feeResponse struct {
	SessionFee string `json:"session_fee,omitempty"`
	Error      string `json:"error,omitempty"`
}

// feeHandler changes the container's ask (?session_fee=0.3, tokens per 15-minute session): a new
// record and the next heartbeats carry it, so indexers rank by it within one heartbeat. Loopback only.
func (n *Node) feeHandler(w http.ResponseWriter, r *http.Request) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().IsLoopback() {
		writeJSON(w, http.StatusForbidden, feeResponse{Error: "operator actions are allowed from loopback only"})
		return
	}
	if n.cont == nil {
		writeJSON(w, http.StatusNotFound, feeResponse{Error: "this node does not run the container role"})
		return
	}
	fee, err := ParseAmount(r.URL.Query().Get("session_fee"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, feeResponse{Error: "session_fee: " + err.Error()})
		return
	}
	if err := n.cont.SetFee(r.Context(), fee); err != nil {
		writeJSON(w, http.StatusBadRequest, feeResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, feeResponse{SessionFee: FormatAmount(n.cont.Fee())})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (a *adminServer) addr() string { return a.ln.Addr().String() }

func (a *adminServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}

func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
