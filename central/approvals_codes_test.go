package central

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sessctl/sessctl/approval"
)

// A holder's refusal crosses PostgreSQL as a code and comes back as the
// same approval error, so the asking replica's API answers as the holder's
// would.
func TestAskErrorRoundTrip(t *testing.T) {
	for _, err := range []error{
		approval.ErrUnknownID, approval.ErrAlreadyDecided, approval.ErrReasonRequired,
		approval.ErrSelfApproval, approval.ErrBadDecision, approval.ErrNoApprover,
		fmt.Errorf("%w: %q", approval.ErrUnknownID, "x1"),
		fmt.Errorf("%w: %s", approval.ErrAlreadyDecided, approval.Denied),
	} {
		code := askErrorCode(err)
		back := askError(code, err.Error())
		var want error
		for _, c := range askErrorCodes {
			if errors.Is(err, c.err) {
				want = c.err
			}
		}
		if code == "" || code == "other" || !errors.Is(back, want) {
			t.Errorf("%v: code %q, back %v", err, code, back)
		}
	}
	if askErrorCode(nil) != "" {
		t.Error("no error has a code")
	}
	if c := askErrorCode(errors.New("disk on fire")); c != "other" {
		t.Errorf("unknown error: code %q", c)
	}
	if err := askError("withdrawn", "the holding replica did not answer"); err == nil {
		t.Error("a withdrawn ask is not an error")
	}
}

func TestLikePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"0123abc": "0123abc%",
		"a%b_c\\": `a\%b\_c\\%`,
	} {
		if got := likePrefix(in); got != want {
			t.Errorf("likePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
