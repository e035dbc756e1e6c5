package certs_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/certs"
)

const refusedMsg = "certificate refused, keeping the one in service"

// pairFixture issues server certificates for localhost and writes them
// where a FileSource reads them.
type pairFixture struct {
	ca                *certs.CA
	roots             *x509.CertPool
	certFile, keyFile string
}

func newPairFixture(t *testing.T) *pairFixture {
	t.Helper()
	ca := newCA(t, "public", time.Now(), 0)
	dir := t.TempDir()
	return &pairFixture{ca: ca, roots: pool(ca.Cert),
		certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
}

// issue returns a pair as if issued at now, valid for life.
func (f *pairFixture) issue(t *testing.T, now time.Time, life time.Duration) tls.Certificate {
	t.Helper()
	key := newKey(t)
	leaf, err := f.ca.IssueServer(key.Public(), []string{"localhost"}, now, life)
	if err != nil {
		t.Fatal(err)
	}
	return certs.TLSCertificate(leaf, key, f.ca.Cert)
}

func certPEM(c tls.Certificate) []byte {
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, certs.EncodeCert(der)...)
	}
	return out
}

func keyPEM(t *testing.T, c tls.Certificate) []byte {
	t.Helper()
	b, err := certs.EncodeKey(c.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replace writes data next to path and renames it over path, as
// cert-manager, certbot's deploy hooks and `mv` do.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (f *pairFixture) write(t *testing.T, c tls.Certificate) {
	t.Helper()
	replace(t, f.certFile, certPEM(c))
	replace(t, f.keyFile, keyPEM(t, c))
}

// served runs a handshake against src and returns the serial the client saw.
func (f *pairFixture) served(t *testing.T, src certs.Source) *big.Int {
	t.Helper()
	sc := certs.ServerConfig(nil)
	sc.GetCertificate = src.GetCertificate
	cc := certs.ClientConfig(nil)
	cc.RootCAs, cc.ServerName = f.roots, "localhost"
	st, serr, cerr := handshake(t, sc, cc)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	return st.PeerCertificates[0].SerialNumber
}

func serialOf(c tls.Certificate) *big.Int { return c.Leaf.SerialNumber }

// eventLog records FileOptions.OnEvent calls.
type eventLog struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	level, msg string
	fields     map[string]any
}

func (l *eventLog) record(level, msg string, fields map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event{level, msg, fields})
}

func (l *eventLog) last() event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == 0 {
		return event{}
	}
	return l.events[len(l.events)-1]
}

func TestNewFileSourceRefuses(t *testing.T) {
	fx := newPairFixture(t)
	now := time.Now()
	good := fx.issue(t, now, 24*time.Hour)
	other := fx.issue(t, now, 24*time.Hour)
	for _, tt := range []struct {
		name       string
		cert, key  []byte
		clock      time.Time
		wantErr    error
		wantInText string
	}{
		{"key of another certificate", certPEM(good), keyPEM(t, other), now, certs.ErrKeyMismatch, "does not match"},
		{"garbage certificate", []byte("hello"), keyPEM(t, good), now, nil, "no PEM certificate"},
		{"garbage key", certPEM(good), []byte("hello"), now, nil, "no PEM private key"},
		{"expired by the injected clock", certPEM(good), keyPEM(t, good), now.Add(48 * time.Hour), certs.ErrExpired, "expired"},
		{"not yet valid by the injected clock", certPEM(good), keyPEM(t, good), now.Add(-time.Hour), certs.ErrNotYetValid, "not yet valid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			replace(t, fx.certFile, tt.cert)
			replace(t, fx.keyFile, tt.key)
			_, err := certs.NewFileSource(fx.certFile, fx.keyFile, certs.FileOptions{Now: func() time.Time { return tt.clock }})
			if err == nil {
				t.Fatal("NewFileSource accepted a bad pair")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantInText) {
				t.Errorf("error %q does not say %q", err, tt.wantInText)
			}
		})
	}
}

// A bad new pair is refused on Reload: the old one keeps serving, and the
// log and the event say why.
func TestFileSourceReloadRefusesBadPair(t *testing.T) {
	fx := newPairFixture(t)
	now := time.Now()
	old := fx.issue(t, now, 24*time.Hour)
	fx.write(t, old)
	core, logs := observer.New(zapcore.DebugLevel)
	var events eventLog
	src, err := certs.NewFileSource(fx.certFile, fx.keyFile, certs.FileOptions{Logger: zap.New(core), OnEvent: events.record})
	if err != nil {
		t.Fatal(err)
	}
	next := fx.issue(t, now, 24*time.Hour)
	expired := fx.issue(t, now.Add(-48*time.Hour), 24*time.Hour)
	future := fx.issue(t, now.Add(48*time.Hour), 24*time.Hour)
	for _, tt := range []struct {
		name       string
		cert, key  []byte
		wantErr    error
		wantReason string
	}{
		{"mismatched key", certPEM(next), keyPEM(t, old), certs.ErrKeyMismatch, "key_mismatch"},
		{"garbage certificate", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), keyPEM(t, next), nil, "unparsable"},
		{"truncated certificate", certPEM(next)[:200], keyPEM(t, next), nil, "unparsable"},
		{"garbage key", certPEM(next), []byte("junk"), nil, "unparsable"},
		{"expired", certPEM(expired), keyPEM(t, expired), certs.ErrExpired, "expired"},
		{"not yet valid", certPEM(future), keyPEM(t, future), certs.ErrNotYetValid, "not_yet_valid"},
		{"key file missing", certPEM(next), nil, os.ErrNotExist, "unreadable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			replace(t, fx.certFile, tt.cert)
			if tt.key == nil {
				os.Remove(fx.keyFile)
			} else {
				replace(t, fx.keyFile, tt.key)
			}
			logs.TakeAll()
			err := src.Reload()
			if err == nil {
				t.Fatal("Reload accepted a bad pair")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			refused := logs.FilterMessage(refusedMsg).All()
			if len(refused) != 1 {
				t.Fatalf("%d refusal logs, want 1; all: %v", len(refused), logs.All())
			}
			entry := refused[0]
			if entry.Level != zapcore.ErrorLevel {
				t.Errorf("refusal logged at %v, want error", entry.Level)
			}
			f := entry.ContextMap()
			if f["reason"] != tt.wantReason || f["error"] == "" || f["cert_file"] != fx.certFile {
				t.Errorf("refusal fields %v, want reason %q, the error and the file", f, tt.wantReason)
			}
			if f["serving_serial"] != serialOf(old).Text(16) {
				t.Errorf("serving_serial %v, want the old one %s", f["serving_serial"], serialOf(old).Text(16))
			}
			if ev := events.last(); ev.level != "error" || ev.msg != refusedMsg || ev.fields["reason"] != tt.wantReason {
				t.Errorf("event %+v, want an error event with reason %q", ev, tt.wantReason)
			}
			if got := fx.served(t, src); got.Cmp(serialOf(old)) != 0 {
				t.Errorf("serving serial %x, want the old %x", got, serialOf(old))
			}
			if src.Leaf().SerialNumber.Cmp(serialOf(old)) != 0 {
				t.Error("Leaf changed after a refusal")
			}
		})
	}

	// A good pair after all that is taken, and new handshakes see it.
	fx.write(t, next)
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload of a good pair: %v", err)
	}
	if got := fx.served(t, src); got.Cmp(serialOf(next)) != 0 {
		t.Errorf("serving serial %x after reload, want %x", got, serialOf(next))
	}
	if ev := events.last(); ev.level != "info" || ev.msg != "certificate reloaded" || ev.fields["serial"] != serialOf(next).Text(16) {
		t.Errorf("event %+v, want info \"certificate reloaded\" with the new serial", ev)
	}
	// Reloading the same pair again changes nothing and reports nothing.
	n := len(events.events)
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(events.events) != n {
		t.Errorf("an unchanged reload reported %+v", events.last())
	}
}

// runSource runs src until the test's bubble ends it.
func runSource(t *testing.T, src certs.Source) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// The poller picks up a pair replaced by renames, the certificate a poll
// before the key, without a false alarm in between.
func TestFileSourcePollsReplacedPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newPairFixture(t)
		old := fx.issue(t, time.Now(), 24*time.Hour)
		fx.write(t, old)
		core, logs := observer.New(zapcore.DebugLevel)
		src, err := certs.NewFileSource(fx.certFile, fx.keyFile, certs.FileOptions{Logger: zap.New(core)})
		if err != nil {
			t.Fatal(err)
		}
		stop := runSource(t, src)
		defer stop()

		next := fx.issue(t, time.Now(), 24*time.Hour)
		replace(t, fx.certFile, certPEM(next)) // the certificate first...
		time.Sleep(certs.DefaultPollInterval + time.Second)
		synctest.Wait()
		if src.Leaf().SerialNumber.Cmp(serialOf(old)) != 0 {
			t.Fatal("half-replaced pair went into service")
		}
		replace(t, fx.keyFile, keyPEM(t, next)) // ...the key a poll later
		time.Sleep(certs.DefaultPollInterval)
		synctest.Wait()
		if src.Leaf().SerialNumber.Cmp(serialOf(next)) != 0 {
			t.Fatalf("serving %x, want the replaced pair %x", src.Leaf().SerialNumber, serialOf(next))
		}
		if got := fx.served(t, src); got.Cmp(serialOf(next)) != 0 {
			t.Errorf("handshake saw %x, want %x", got, serialOf(next))
		}
		if n := logs.FilterMessage(refusedMsg).Len(); n != 0 {
			t.Errorf("%d refusals logged for a pair replaced a moment apart", n)
		}
		reloads := logs.FilterMessage("certificate reloaded").All()
		if len(reloads) != 1 || reloads[0].ContextMap()["trigger"] != "poll" {
			t.Errorf("reload logs %v, want one, by the poller", reloads)
		}
	})
}

// A bad pair that stays is reported once, at the poll after the one that
// saw it, and the old pair keeps serving.
func TestFileSourcePollRefusesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newPairFixture(t)
		old := fx.issue(t, time.Now(), 24*time.Hour)
		fx.write(t, old)
		core, logs := observer.New(zapcore.DebugLevel)
		src, err := certs.NewFileSource(fx.certFile, fx.keyFile, certs.FileOptions{Logger: zap.New(core), PollInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		stop := runSource(t, src)
		defer stop()

		other := fx.issue(t, time.Now(), 24*time.Hour)
		replace(t, fx.certFile, certPEM(fx.issue(t, time.Now(), 24*time.Hour)))
		replace(t, fx.keyFile, keyPEM(t, other))
		for poll, want := range []int{0, 1, 1, 1} {
			time.Sleep(time.Second)
			synctest.Wait()
			if n := logs.FilterMessage(refusedMsg).Len(); n != want {
				t.Fatalf("after poll %d: %d refusals, want %d", poll+1, n, want)
			}
		}
		if r := logs.FilterMessage(refusedMsg).All()[0].ContextMap()["reason"]; r != "key_mismatch" {
			t.Errorf("reason %v, want key_mismatch", r)
		}
		if src.Leaf().SerialNumber.Cmp(serialOf(old)) != 0 {
			t.Error("a refused pair went into service")
		}
	})
}
