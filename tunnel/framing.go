package tunnel

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// yamux frame header layout (yamux spec): version:u8 type:u8 flags:u16
// stream:u32 length:u32.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

const (
	// maxQueued is how many bytes may wait for the flusher before Write
	// blocks (a larger frame still goes alone): yamux's send loop then
	// waits as it would on the socket.
	maxQueued = 64 << 10
	// maxKeptBuffer bounds the batch buffers a session keeps for reuse:
	// a full queue and one more 64 KiB frame, what a download needs to
	// stream without allocating.
	maxKeptBuffer = maxQueued + 64<<10 + 4<<10
)

// frameConn sits between yamux and the TLS connection and batches what
// yamux writes. yamux's send loop writes every frame with its own Write,
// and a data frame as two (its 12-byte header, then its body); over TLS
// each Write is a record and a system call. frameConn appends frames to a
// queue and returns at once; its flusher writes everything queued in one
// Write. Frames of many streams that queue while one write is in the
// kernel leave together in the next: one system call, and records of up
// to 16 KiB instead of one per frame. A data frame's header is held back
// until its body is queued with it.
//
// A write error closes the connection, so the session's read loop ends
// too; later Writes return the error. Close sends what is queued, within
// writeTimeout, and then closes the connection: a frame yamux was told is
// sent (a GoAway, a refusal on the control stream) is not dropped.
type frameConn struct {
	net.Conn
	writeTimeout time.Duration

	// Only yamux's send loop writes: hdr and held need no lock.
	hdr  [yamuxHeaderSize]byte
	held int // body length announced by the held header; 0: none held

	mu      sync.Mutex
	cond    sync.Cond // queue filled or drained, closing, flusher gone
	queue   []byte    // bytes waiting for the flusher
	spare   []byte    // the flusher's last batch, for reuse as the queue
	err     error     // set once the flusher is gone
	closing bool
	started time.Time     // when the write in progress began; zero: none
	done    chan struct{} // closed when the flusher is gone
}

// newFrameConn wraps conn and starts its flusher, which Close stops.
func newFrameConn(conn net.Conn, writeTimeout time.Duration) *frameConn {
	c := &frameConn{Conn: conn, writeTimeout: writeTimeout, done: make(chan struct{})}
	c.cond.L = &c.mu
	go c.flush()
	return c
}

func (c *frameConn) Write(p []byte) (int, error) {
	if c.held > 0 {
		want := c.held
		c.held = 0
		if len(p) == want {
			if err := c.enqueue(c.hdr[:], p); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		// Not the body we expected: keep the bytes in order anyway.
		if err := c.enqueue(c.hdr[:], nil); err != nil {
			return 0, err
		}
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData {
		if n := binary.BigEndian.Uint32(p[8:]); n > 0 && n <= 1<<30 {
			copy(c.hdr[:], p)
			c.held = int(n)
			return len(p), nil
		}
	}
	if err := c.enqueue(p, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// enqueue appends a and b to the queue, waiting while it is full.
func (c *frameConn) enqueue(a, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.queue) > 0 && len(c.queue)+len(a)+len(b) > maxQueued {
		c.cond.Wait()
	}
	switch {
	case c.closing:
		return net.ErrClosed
	case c.err != nil:
		return c.err
	}
	if len(c.queue) == 0 {
		c.cond.Broadcast() // the flusher waits for bytes
	}
	c.queue = append(append(c.queue, a...), b...)
	return nil
}

// flush writes the queue, all of it at a time, until Close or a write
// error.
func (c *frameConn) flush() {
	defer close(c.done)
	if err := c.flushLoop(); err != nil {
		c.Conn.Close() // and the session's reads end too
	}
}

// flushLoop returns the write error that ended it, nil when closed.
func (c *frameConn) flushLoop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.cond.Broadcast() // the flusher is gone
	for {
		for len(c.queue) == 0 && !c.closing {
			c.cond.Wait()
		}
		if len(c.queue) == 0 {
			c.err = net.ErrClosed
			return nil
		}
		batch := c.queue
		c.queue = c.spare[:0]
		c.started = time.Now()
		c.mu.Unlock()
		_, err := c.Conn.Write(batch)
		c.mu.Lock()
		c.started = time.Time{}
		c.spare = nil
		if cap(batch) <= maxKeptBuffer {
			c.spare = batch
		}
		c.cond.Broadcast() // room in the queue
		if err != nil {
			c.err = err
			return err
		}
	}
}

// Close sends what is queued, stops the flusher and closes the
// connection. The queue gets writeTimeout, counted from the start of the
// write in progress if there is one: a peer that stopped reading that long
// ago is dead (yamux's keepalive closes the session for that), and closing
// the connection ends the stuck write at once.
func (c *frameConn) Close() error {
	c.mu.Lock()
	c.closing = true
	c.cond.Broadcast()
	from := c.started
	if from.IsZero() {
		from = time.Now()
	}
	c.mu.Unlock()
	t := time.NewTimer(time.Until(from.Add(c.writeTimeout)))
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
	err := c.Conn.Close()
	<-c.done
	return err
}
