package auth_test

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
)

// t0 has nanoseconds on purpose: the registry keeps microseconds.
var t0 = time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)

// newToken mints a token for tenant and stores it with uses uses, valid
// for a day from t0.
func newToken(t *testing.T, s auth.Store, tenant string, uses int) (auth.Token, auth.TokenRecord) {
	t.Helper()
	tok, err := auth.NewToken(tenant, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := auth.TokenRecord{
		ID: tok.ID, Tenant: tenant, Hash: tok.Hash(), ExpiresAt: t0.Add(24 * time.Hour), UsesLeft: uses,
		RequireApproval: true, Groups: []string{"sales", "laptops", "sales"}, CreatedAt: t0, CreatedBy: "alice",
	}
	if err := s.CreateToken(ctxT(t), rec); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return tok, rec
}

// stored is rec as the registry gives it back.
func storedToken(rec auth.TokenRecord) auth.TokenRecord {
	rec.ExpiresAt = rec.ExpiresAt.Truncate(time.Microsecond)
	rec.CreatedAt = rec.CreatedAt.Truncate(time.Microsecond)
	rec.Groups = []string{"laptops", "sales"}
	return rec
}

func testTokenLifecycle(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	tok, rec := newToken(t, s, "acme", 2)
	if err := s.CreateToken(ctx, rec); !errors.Is(err, auth.ErrTokenExists) {
		t.Errorf("second CreateToken = %v, want ErrTokenExists", err)
	}

	wrong := tok.TokenParts
	wrong.Secret = append([]byte{^tok.Secret[0]}, tok.Secret[1:]...)
	otherTenant := tok.TokenParts
	otherTenant.Tenant = "other"
	unknown, _ := auth.NewToken("acme", nil)
	refusals := []struct {
		name string
		p    auth.TokenParts
		now  time.Time
		want error
	}{
		{"wrong secret", wrong, t0, auth.ErrTokenMismatch},
		{"wrong secret after expiry", wrong, t0.Add(48 * time.Hour), auth.ErrTokenMismatch},
		{"unknown id", unknown.TokenParts, t0, auth.ErrTokenUnknown},
		{"other tenant", otherTenant, t0, auth.ErrTokenUnknown},
		{"at expiry", tok.TokenParts, rec.ExpiresAt, auth.ErrTokenExpired},
		{"after expiry", tok.TokenParts, t0.Add(25 * time.Hour), auth.ErrTokenExpired},
	}
	for _, r := range refusals {
		if _, err := s.UseToken(ctx, r.p, r.now); !errors.Is(err, r.want) {
			t.Errorf("%s: UseToken = %v, want %v", r.name, err, r.want)
		}
	}

	// None of the refusals spent a use: two remain.
	for i, left := range []int{1, 0} {
		got, err := s.UseToken(ctx, tok.TokenParts, t0.Add(time.Hour))
		if err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
		want := storedToken(rec)
		want.UsesLeft = left
		if !reflect.DeepEqual(got, want) {
			t.Errorf("use %d returned\n%+v, want\n%+v", i+1, got, want)
		}
	}
	if _, err := s.UseToken(ctx, tok.TokenParts, t0.Add(time.Hour)); !errors.Is(err, auth.ErrTokenUsedUp) {
		t.Errorf("third use = %v, want ErrTokenUsedUp", err)
	}
	if _, err := s.UseToken(ctx, tok.TokenParts, t0.Add(48*time.Hour)); !errors.Is(err, auth.ErrTokenExpired) {
		t.Errorf("use of a spent, expired token = %v, want ErrTokenExpired", err)
	}
}

// Twenty enrollments race for seven uses, through two stores (two
// connectors): exactly seven win.
func testTokenConcurrency(t *testing.T, b backend) {
	ctx := ctxT(t)
	s1, dsn := open(t, b)
	s2 := authtest.Open(t, dsn)
	const uses, racers = 7, 20
	tok, _ := newToken(t, s1, "acme", uses)

	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			<-start
			_, errs[i] = s.UseToken(ctx, tok.TokenParts, t0)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, auth.ErrTokenUsedUp):
			t.Errorf("UseToken: %v", err)
		}
	}
	if ok != uses {
		t.Errorf("%d enrollments succeeded, want %d", ok, uses)
	}
	list, err := s1.ListTokens(ctx, "acme")
	if err != nil || len(list) != 1 || list[0].UsesLeft != 0 {
		t.Errorf("ListTokens = %+v, %v; want one token with no uses left", list, err)
	}
}

func testTokenListDelete(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, _ := open(t, b)
	tokA, recA := newToken(t, s, "acme", 1)
	tokB, err := auth.NewToken("acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	recB := auth.TokenRecord{ID: tokB.ID, Tenant: "acme", Hash: tokB.Hash(), ExpiresAt: t0.Add(time.Hour),
		UsesLeft: 50, CreatedAt: t0.Add(time.Minute), CreatedBy: "bob"}
	if err := s.CreateToken(ctx, recB); err != nil {
		t.Fatal(err)
	}
	newToken(t, s, "other", 1)

	list, err := s.ListTokens(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	wantB := recB
	wantB.Groups = []string{}
	want := []auth.TokenRecord{storedToken(wantB), storedToken(recA)} // newest first
	want[0].Groups = []string{}
	if !reflect.DeepEqual(list, want) {
		t.Errorf("ListTokens =\n%+v, want\n%+v", list, want)
	}

	if err := s.DeleteToken(ctx, "other", tokA.ID); !errors.Is(err, auth.ErrTokenUnknown) {
		t.Errorf("DeleteToken of another tenant's token = %v, want ErrTokenUnknown", err)
	}
	if err := s.DeleteToken(ctx, "acme", tokA.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseToken(ctx, tokA.TokenParts, t0); !errors.Is(err, auth.ErrTokenUnknown) {
		t.Errorf("UseToken of a deleted token = %v, want ErrTokenUnknown", err)
	}
	if err := s.DeleteToken(ctx, "acme", tokA.ID); !errors.Is(err, auth.ErrTokenUnknown) {
		t.Errorf("second DeleteToken = %v, want ErrTokenUnknown", err)
	}
}
