package certs_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/sekisho/sekisho/certs/certstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, certstest.IgnoreLibraryGoroutines()...)
}
