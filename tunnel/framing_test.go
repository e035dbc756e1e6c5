package tunnel

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

// recordConn records each Write it gets.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestFrameConnMergesDataHeaderWithBody(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100)
	ping := yamuxHeader(2, 7)      // ping: no body follows
	update := yamuxHeader(1, 4096) // window update: length is a delta, no body
	cases := []struct {
		name   string
		writes [][]byte
		want   [][]byte
	}{
		{"data header and body in one write",
			[][]byte{yamuxHeader(0, 100), body},
			[][]byte{append(yamuxHeader(0, 100), body...)}},
		{"control frames pass through",
			[][]byte{ping, update},
			[][]byte{ping, update}},
		{"empty data frame passes through",
			[][]byte{yamuxHeader(0, 0)},
			[][]byte{yamuxHeader(0, 0)}},
		{"unexpected write after a data header keeps order",
			[][]byte{yamuxHeader(0, 100), ping},
			[][]byte{yamuxHeader(0, 100), ping}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordConn{}
			fc := &frameConn{Conn: rec}
			for _, w := range tc.writes {
				if n, err := fc.Write(w); err != nil || n != len(w) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
			}
			if len(rec.writes) != len(tc.want) {
				t.Fatalf("%d writes reached the connection, want %d", len(rec.writes), len(tc.want))
			}
			for i := range tc.want {
				if !bytes.Equal(rec.writes[i], tc.want[i]) {
					t.Errorf("write %d = %x, want %x", i, rec.writes[i], tc.want[i])
				}
			}
		})
	}
}
