package kcl

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDrainInShardOrder(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 4)
	puts := f.putN(400, 16, "")
	s := startConsumer(t, f.options())
	got := s.receive(len(puts), 30*time.Second, ackAll)
	checkShardOrder(t, got)
	require.ElementsMatch(t, putData(puts), dataOf(got))
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
}
