//go:build nostepca

package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/proxy"
)

// ErrNoStepCA says that this binary cannot use step-ca.
var ErrNoStepCA = errors.New("this sessctl was built without step-ca support (build tag nostepca); rebuild without -tags nostepca")

// openStepCA refuses a directory enrolled with step-ca, which this build
// cannot use; ok is false otherwise.
func openStepCA(dir string, _ ca.LoadOptions) (proxy.Certs, io.Closer, bool, error) {
	if stepcaEnrolled(dir) {
		return nil, nil, true, fmt.Errorf("%s is enrolled with step-ca: %w", dir, ErrNoStepCA)
	}
	return nil, nil, false, nil
}

// stepcaEnrolled reports whether dir holds a step-ca enrollment.
func stepcaEnrolled(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "stepca.json"))
	return err == nil
}
