//go:build !nostepca

package server

import (
	"errors"
	"io"
	"io/fs"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/ca/stepca"
	"github.com/sessctl/sessctl/proxy"
)

// openStepCA returns the certificate source of a CA directory enrolled
// with step-ca, and ok false when dir was not enrolled (then ca.Load
// applies). In leaf mode the source is a *stepca.Leaves (close it on
// shutdown); in intermediate mode a *stepca.Intermediate, an
// *ca.Authority that also sends step-ca's chain.
func openStepCA(dir string, opts ca.LoadOptions) (certs proxy.Certs, closer io.Closer, ok bool, err error) {
	e, err := stepca.ReadEnrollment(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	switch e.Mode {
	case stepca.ModeLeaf:
		l, err := stepca.OpenLeaves(dir, opts.Logger)
		if err != nil {
			return nil, nil, true, err
		}
		return l, l, true, nil
	default:
		li, err := stepca.LoadIntermediate(dir, opts)
		if err != nil {
			return nil, nil, true, err
		}
		return li, io.NopCloser(nil), true, nil
	}
}
