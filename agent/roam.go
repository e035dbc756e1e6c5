package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/internal/netwatch"
)

const (
	// maxPaths bounds the sockets of one connection. quic-go registers a
	// connection with every transport it probed a path on, and closing
	// any of them closes the connection: they all live as long as it.
	maxPaths = 8
	// hintPause is the least time between two looks at the routes that
	// failing sends asked for.
	hintPause = 200 * time.Millisecond
)

// roamer moves the live QUIC connections to the gateways onto a new path
// when the PC's network changes (netwatch reports it, or a send fails
// because its path is gone). For each connection it looks up the address
// the PC would now send from toward the gateway; when that is not the
// address of the connection's path, it opens a socket there, adds the path
// to the connection (quic-go Conn.AddPath), probes it (Path.Probe: a
// PATH_CHALLENGE the gateway must answer within DialTimeout) and switches
// to it (Path.Switch). A probe that fails is logged, and the connection is
// left as it is: it recovers if its path comes back, or ends at its idle
// timeout, and HTTP/3 dials a new one.
//
// The roamer runs while connections are live: the first one tracked
// starts its loop (and the network watcher), the last one to end stops it.
type roamer struct {
	log     *zap.Logger
	timeout time.Duration // bounds one probe
	watch   netwatch.Config
	// source returns the address the PC would send from toward a gateway
	// now (routeSource); tests replace it.
	source func(remote *net.UDPAddr) (*net.UDPAddr, error)

	hints chan struct{} // failing sends; one buffered

	mu    sync.Mutex
	conns map[*quic.Conn]*roamConn
	stop  context.CancelFunc // of the running loop; nil when none runs
	done  chan struct{}      // closed when the last loop started has returned
}

// roamConn is a live connection and the paths it has had.
type roamConn struct {
	conn    *quic.Conn
	gateway string
	remote  *net.UDPAddr

	mu     sync.Mutex
	cur    *net.UDPAddr // local address of the path in use
	paths  []quicPath   // closed when the connection ends
	ended  bool
	capped bool // told that it has had maxPaths paths
}

func newRoamer(cfg Config) *roamer {
	return &roamer{
		log:     cfg.Logger,
		timeout: cfg.DialTimeout,
		watch:   netwatch.Config{Logger: cfg.Logger},
		source:  routeSource,
		hints:   make(chan struct{}, 1),
		conns:   map[*quic.Conn]*roamConn{},
	}
}

// listen opens the socket of a first path to remote, bound to the address
// the PC would send from toward it now; track arms it.
func (r *roamer) listen(remote *net.UDPAddr) (*pathConn, error) {
	local, err := r.source(remote)
	if err != nil {
		return nil, fmt.Errorf("route to %s: %w", remote, err)
	}
	return r.listenAt(local)
}

// listenAt opens a path's socket on local address at.
func (r *roamer) listenAt(at *net.UDPAddr) (*pathConn, error) {
	uc, err := net.ListenUDP("udp", at)
	if err != nil {
		return nil, err
	}
	return &pathConn{UDPConn: uc, hint: r.hint}, nil
}

// hint asks the loop to look at the routes now.
func (r *roamer) hint() {
	select {
	case r.hints <- struct{}{}:
	default:
	}
}

// track follows conn, whose handshake on p has succeeded, until it ends.
func (r *roamer) track(conn *quic.Conn, gateway string, remote *net.UDPAddr, p quicPath) {
	p.pc.armed.Store(true)
	rc := &roamConn{conn: conn, gateway: gateway, remote: remote, cur: p.local(), paths: []quicPath{p}}
	r.mu.Lock()
	r.conns[conn] = rc
	if r.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		r.stop, r.done = cancel, done
		go r.run(ctx, done)
	}
	r.mu.Unlock()
	context.AfterFunc(conn.Context(), func() { r.forget(conn) })
}

// forget drops an ended connection and closes its paths; the last one
// stops the loop.
func (r *roamer) forget(conn *quic.Conn) {
	r.mu.Lock()
	rc, ok := r.conns[conn]
	delete(r.conns, conn)
	var stop context.CancelFunc
	if ok && len(r.conns) == 0 {
		stop, r.stop = r.stop, nil
	}
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	if ok {
		rc.end()
	}
}

// settle forgets the connections that have ended and, when none is left,
// waits for the loop to return.
func (r *roamer) settle() {
	r.mu.Lock()
	var ended []*quic.Conn
	for conn := range r.conns {
		if conn.Context().Err() != nil {
			ended = append(ended, conn)
		}
	}
	r.mu.Unlock()
	for _, conn := range ended {
		r.forget(conn)
	}
	r.mu.Lock()
	done, idle := r.done, r.stop == nil
	r.mu.Unlock()
	if idle && done != nil {
		<-done
	}
}

// run looks at the routes after every network change and failing send
// until ctx ends.
func (r *roamer) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	defer wg.Wait()
	changes := make(chan netwatch.Change, 1)
	if w, err := netwatch.New(r.watch); err != nil {
		r.log.Warn("network changes not watched: quic connections move only when a send fails", zap.Error(err))
	} else {
		wg.Go(func() {
			err := w.Run(ctx, func(c netwatch.Change) {
				select {
				case changes <- c:
				default: // the look pending will see this change too
				}
			})
			if err != nil {
				r.log.Warn("network watcher stopped: quic connections move only when a send fails", zap.Error(err))
			}
		})
	}
	var lastHint time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-changes:
			r.roamAll(ctx, "network change: "+c.Kinds.String(), c.First)
		case <-r.hints:
			if now := time.Now(); now.Sub(lastHint) >= hintPause {
				lastHint = now
				r.roamAll(ctx, "send failed", now)
			}
		}
	}
}

// roamAll moves every live connection whose path is no longer the one
// the PC would use, at the same time, and waits for them.
func (r *roamer) roamAll(ctx context.Context, trigger string, since time.Time) {
	r.mu.Lock()
	conns := slices.Collect(maps.Values(r.conns))
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, rc := range conns {
		wg.Go(func() { r.roam(ctx, rc, trigger, since) })
	}
	wg.Wait()
}

// roam moves rc to the path the PC would use now, if that is a new one.
func (r *roamer) roam(ctx context.Context, rc *roamConn, trigger string, since time.Time) {
	log := r.log.With(zap.String("gateway", rc.gateway), zap.String("trigger", trigger))
	to, err := r.source(rc.remote)
	if err != nil {
		log.Debug("no route to the gateway for now", zap.Error(err))
		return
	}
	from, n := rc.current()
	if sameHost(from, to) {
		return
	}
	if n >= maxPaths {
		if rc.capReached() {
			log.Warn("quic connection not moved: it has had too many paths, it ends when its path fails", zap.Int("paths", n))
		}
		return
	}
	start := time.Now()
	p, err := r.newPath(rc, to)
	if err != nil {
		log.Warn("quic connection not moved: new path", zap.String("old_path", from.String()), zap.Error(err))
		return
	}
	probe, err := r.probe(ctx, rc, p)
	if err != nil {
		log.Warn("quic connection not moved: new path did not answer", zap.String("old_path", from.String()),
			zap.String("new_path", p.local().String()), zap.Duration("probe_time", probe), zap.Error(err))
		return
	}
	rc.moved(p.local())
	if err := nudge(rc.conn); err != nil {
		log.Debug("nudge on the new path", zap.Error(err))
	}
	log.Info("quic connection moved to a new path", zap.String("old_path", from.String()),
		zap.String("new_path", p.local().String()), zap.String("remote_addr", rc.remote.String()),
		zap.Duration("probe_time", probe), zap.Duration("since_change", time.Since(since)),
		zap.Duration("took", time.Since(start)))
}

// newPath opens a socket on local address to and keeps it with rc.
func (r *roamer) newPath(rc *roamConn, to *net.UDPAddr) (quicPath, error) {
	pc, err := r.listenAt(to)
	if err != nil {
		return quicPath{}, err
	}
	pc.armed.Store(true)
	p := quicPath{tr: &quic.Transport{Conn: pc}, pc: pc}
	if !rc.keep(p) {
		return quicPath{}, net.ErrClosed
	}
	return p, nil
}

// probe adds p to rc's connection, probes it and switches to it; it
// returns how long the probe took.
func (r *roamer) probe(ctx context.Context, rc *roamConn, p quicPath) (time.Duration, error) {
	path, err := rc.conn.AddPath(p.tr)
	if err != nil {
		return 0, err
	}
	pctx, cancel := context.WithTimeout(rc.conn.Context(), r.timeout)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	start := time.Now()
	err = path.Probe(pctx)
	took := time.Since(start)
	if err == nil {
		err = path.Switch()
	}
	if err != nil {
		path.Close()
		return took, err
	}
	return took, nil
}

func (rc *roamConn) current() (*net.UDPAddr, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.cur, len(rc.paths)
}

// capReached marks rc as having had maxPaths paths; true the first time.
func (rc *roamConn) capReached() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	first := !rc.capped
	rc.capped = true
	return first
}

func (rc *roamConn) moved(to *net.UDPAddr) {
	rc.mu.Lock()
	rc.cur = to
	rc.mu.Unlock()
}

// keep adds p to rc's paths; false, with p closed, when rc has ended.
func (rc *roamConn) keep(p quicPath) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.ended {
		p.close()
		return false
	}
	rc.paths = append(rc.paths, p)
	return true
}

// end closes rc's paths: its connection has ended.
func (rc *roamConn) end() {
	rc.mu.Lock()
	paths := rc.paths
	rc.paths, rc.ended = nil, true
	rc.mu.Unlock()
	for _, p := range paths {
		p.close()
	}
}
