package e2e

import (
	"github.com/sekisho/sekisho/certs/certstest"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, certstest.IgnoreLibraryGoroutines()...)
}
