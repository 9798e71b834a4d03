package kcl

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// ignoreLost keeps every error but a lost lease, wrapped or not.
func TestIgnoreLost(t *testing.T) {
	other := errors.New("throttled")
	for _, tc := range []struct {
		err, want error
	}{
		{nil, nil},
		{errLeaseLost, nil},
		{fmt.Errorf("lease table %q: %w", "t", errLeaseLost), nil},
		{other, other},
	} {
		assert.Equal(t, tc.want, ignoreLost(tc.err), "%v", tc.err)
	}
}
