//go:build !unix

package diskspace

import "errors"

func space(string) (uint64, uint64, error) {
	return 0, 0, errors.New("free space is not measured on this system")
}
