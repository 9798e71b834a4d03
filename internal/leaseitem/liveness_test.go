package leaseitem

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLivenessAlive(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    Liveness
		want string
	}{
		{"a kcl owner whose heartbeat moves", Liveness{Owner: "w1", OwnerBeats: true, OwnerLive: true}, "w1"},
		{"a kcl owner whose heartbeat stood still, though its lease moved (a checkpoint)", Liveness{Owner: "w1", OwnerBeats: true, LeaseLive: true}, ""},
		{"a Java owner renewing its lease", Liveness{Owner: "java-1", LeaseLive: true}, "java-1"},
		{"a Java owner whose lease stood still", Liveness{Owner: "java-1"}, ""},
		{"a Java hand-off whose lease moves: the old owner reads", Liveness{Owner: "java-2", CheckpointOwner: "java-1", LeaseLive: true}, "java-1"},
		{"... whoever the new owner is", Liveness{Owner: "w2", CheckpointOwner: "java-1", OwnerBeats: true, LeaseLive: true}, "java-1"},
		{"a Java hand-off whose lease stood still, to a Java owner", Liveness{Owner: "java-2", CheckpointOwner: "java-1"}, ""},
		{"a Java hand-off whose lease stood still, to an owner that beats", Liveness{Owner: "w2", CheckpointOwner: "java-1", OwnerBeats: true, OwnerLive: true}, "w2"},
		{"an unowned lease", Liveness{LeaseLive: true}, ""},
		{"a kcl owner judged dead at beat 7, the lease written after beat 8 (a fence after a late beat)",
			Liveness{Owner: "w1", OwnerBeats: true, OwnerBeat: 8, JudgedBeat: 7}, "w1"},
		{"a kcl owner judged dead at beat 7, the lease written after beat 7", Liveness{Owner: "w1", OwnerBeats: true, OwnerBeat: 7, JudgedBeat: 7}, ""},
		{"a kcl owner judged dead, the lease not marked (written before kcl marked leases, by Java, or marked by another worker: Lease.OwnerBeat)",
			Liveness{Owner: "w1", OwnerBeats: true, JudgedBeat: 7}, ""},
	} {
		assert.Equal(t, tc.want, tc.v.Alive(), tc.name)
	}
}

// A lease's mark speaks for its owner only if the owner wrote it: a take by
// the Java KCL, or by a kcl that does not mark leases, keeps the mark of the
// owner before.
func TestOwnerBeat(t *testing.T) {
	assert.Equal(t, int64(9), Lease{Owner: "w1", Writer: Writer{Worker: "w1", Token: "t", Beat: 9}}.OwnerBeat())
	assert.Zero(t, Lease{Owner: "w2", Writer: Writer{Worker: "w1", Token: "t", Beat: 9}}.OwnerBeat(), "another worker's mark")
	assert.Zero(t, Lease{Owner: "w1"}.OwnerBeat(), "no mark")
	assert.Zero(t, Lease{Writer: Writer{Beat: 9}}.OwnerBeat(), "unowned")
}

func TestSign(t *testing.T) {
	l := Lease{Key: "k", Owner: "w1", Counter: 3, Checkpoint: Latest}
	renewed, taken, checkpointed := l, l, l
	renewed.Counter++
	taken.Owner = "w2"
	checkpointed.Checkpoint = seq
	assert.NotEqual(t, l.Sign(), renewed.Sign())
	assert.NotEqual(t, l.Sign(), taken.Sign(), "a take restarts the clock, even at the same counter")
	assert.Equal(t, l.Sign(), checkpointed.Sign(), "only the counter and owner count")
	assert.Equal(t, Sign{Counter: 3}, Beat{Worker: "w1", Counter: 3, Stopping: true}.Sign())
}
