package payload_test

import (
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sekisho/sekisho/payload"
)

func TestBudgetSlots(t *testing.T) {
	b := payload.NewBudget(payload.BudgetConfig{MaxConcurrent: 2})
	r1, ok1 := b.Acquire()
	r2, ok2 := b.Acquire()
	_, ok3 := b.Acquire()
	if !ok1 || !ok2 || ok3 || b.Active() != 2 || b.Refused() != 1 {
		t.Fatalf("acquire x3 = %v %v %v, active %d, refused %d; want two slots", ok1, ok2, ok3, b.Active(), b.Refused())
	}
	r1()
	r1() // idempotent
	if r, ok := b.Acquire(); !ok {
		t.Fatal("a released slot is not free")
	} else {
		r()
	}
	b.Set(payload.BudgetConfig{MaxConcurrent: 1}) // lowered below the slots taken
	if _, ok := b.Acquire(); ok {
		t.Fatal("acquired beyond the lowered limit")
	}
	r2()
	if _, ok := b.Acquire(); !ok {
		t.Fatal("no slot after release under the new limit")
	}
	if _, ok := payload.NewBudget(payload.BudgetConfig{}).Acquire(); !ok {
		t.Fatal("an unlimited budget refused")
	}
}

func TestBudgetAcquireWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := payload.NewBudget(payload.BudgetConfig{MaxConcurrent: 1})
		release, _ := b.Acquire()
		start := time.Now()
		if _, ok := b.AcquireWait(t.Context(), time.Second); ok || time.Since(start) != time.Second {
			t.Fatalf("no slot: ok %v after %v, want a refusal after the full wait", ok, time.Since(start))
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			release()
		}()
		start = time.Now()
		r2, ok := b.AcquireWait(t.Context(), time.Second)
		if !ok || time.Since(start) != 300*time.Millisecond {
			t.Fatalf("slot released after 300ms: ok %v after %v", ok, time.Since(start))
		}
		r2()
		if b.Refused() != 1 {
			t.Fatalf("refused = %d, want 1", b.Refused())
		}
	})
}

// TestBudgetPace reads through a paced conn in a synctest bubble and checks
// that at every moment the bytes read stay within rate × elapsed + burst,
// and that the pace is not far below the rate either.
func TestBudgetPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, burst, total = 1 << 20, 128 << 10, 4 << 20
		b := payload.NewBudget(payload.BudgetConfig{BytesPerSecond: rate, Burst: burst})
		src, dst := net.Pipe()
		go func() {
			src.Write(make([]byte, total))
			src.Close()
		}()
		paced := b.Pace(dst)
		defer paced.Close()
		start := time.Now()
		buf := make([]byte, 1<<20)
		var n int64
		for {
			m, err := paced.Read(buf)
			n += int64(m)
			if bound := int64(time.Since(start).Seconds()*rate) + burst; n > bound {
				t.Fatalf("read %d bytes after %v: above rate × elapsed + burst = %d", n, time.Since(start), bound)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		if n != total {
			t.Fatalf("read %d bytes, want %d", n, total)
		}
		if min := time.Duration(float64(total-burst) / rate * float64(time.Second)); elapsed < min || elapsed > min+time.Second {
			t.Fatalf("took %v, want about %v", elapsed, min)
		}
	})
}

func TestBudgetPaceCloseEndsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := payload.NewBudget(payload.BudgetConfig{BytesPerSecond: 1, Burst: payload.MinBurst})
		src, dst := net.Pipe()
		go func() { src.Write(make([]byte, 2*payload.MinBurst)) }()
		paced := b.Pace(dst)
		paced.Read(make([]byte, payload.MinBurst)) // the burst
		done := make(chan error, 1)
		go func() {
			_, err := paced.Read(make([]byte, payload.MinBurst)) // waits ~18 hours
			done <- err
		}()
		synctest.Wait()
		paced.Close()
		if err := <-done; err == nil {
			t.Fatal("read after close returned no error")
		}
		src.Close()
	})
}
