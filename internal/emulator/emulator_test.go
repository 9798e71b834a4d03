package emulator

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Readiness counts only sockets the emulator itself listens on: a port that
// answers because another process holds it is not the emulator's.
func TestOwnsPortsTellsTheEmulatorsListenerFromAnotherProcesss(t *testing.T) {
	s, err := Start(context.Background(), Dynalite)
	require.NoError(t, err)
	defer s.Stop()
	assert.True(t, s.ownsPorts())

	l, err := net.Listen("tcp", "127.0.0.1:0") // held by this test process, not the emulator
	require.NoError(t, err)
	defer l.Close()
	other := &Server{cmd: s.cmd, ports: []int{l.Addr().(*net.TCPAddr).Port}}
	assert.False(t, other.ownsPorts())
}
