package kinesisfake

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// Fault is what befalls one KinesisAPI call. The zero Fault lets it through.
type Fault struct {
	// Err, when set, is returned instead of the call's result: before the
	// call is applied, or after it when AfterApply is set (a reply lost
	// after the server acted on the call).
	Err        error
	AfterApply bool
	// Delay is waited (in real time) before the call is applied; a ctx that
	// ends first makes the call return ctx.Err() without being applied.
	Delay time.Duration
}

// FaultFunc decides the fault of one call of operation op (a method name,
// see the Op constants) on stream (its name; empty when the request names
// none that can be read) and shardID (for GetShardIterator, GetRecords and
// SubscribeToShard; else empty). It is called without the server's lock
// held, from the caller's goroutine, and must be safe for concurrent use.
// Admin methods such as PutRecord are never faulted.
type FaultFunc func(op, stream, shardID string) Fault

// Throttled returns the error AWS throttles op with:
// *types.LimitExceededException for the control-plane calls (ListShards,
// DescribeStreamSummary, the consumer calls) and
// *types.ProvisionedThroughputExceededException for GetRecords and
// GetShardIterator.
func Throttled(op string) error {
	switch op {
	case OpGetRecords, OpGetShardIterator:
		return &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")}
	default:
		return &types.LimitExceededException{Message: aws.String("Rate exceeded for stream")}
	}
}

// InternalFailure returns the error of a 5xx reply: a smithy API error with
// code "InternalFailure" and a server fault.
func InternalFailure() error {
	return &smithy.GenericAPIError{Code: "InternalFailure", Message: "kinesisfake: injected internal failure", Fault: smithy.FaultServer}
}

// Probabilities are the chances of each fault RandomFaults injects in a
// call. Throttle, ServerError and LostReply exclude each other (their sum
// is at most 1); a Delay may come with any of them.
type Probabilities struct {
	Throttle    float64       // Err Throttled(op), before applying
	ServerError float64       // Err InternalFailure(), before applying
	LostReply   float64       // Err InternalFailure(), AfterApply
	Delay       float64       // a Delay drawn uniformly from (0, MaxDelay]
	MaxDelay    time.Duration // when 0, Delay is ignored
	// Ops restricts faults to these operations; empty means every one.
	Ops []string
}

// RandomFaults returns a FaultFunc drawing faults with the probabilities p
// from a PCG generator seeded with seed, under a mutex: the same seed and
// the same sequence of calls give the same faults.
func RandomFaults(seed uint64, p Probabilities) FaultFunc {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(op, _, _ string) Fault {
		if len(p.Ops) > 0 && !slices.Contains(p.Ops, op) {
			return Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		var f Fault
		switch r := rng.Float64(); {
		case r < p.Throttle:
			f.Err = Throttled(op)
		case r < p.Throttle+p.ServerError:
			f.Err = InternalFailure()
		case r < p.Throttle+p.ServerError+p.LostReply:
			f.Err, f.AfterApply = InternalFailure(), true
		}
		if p.MaxDelay > 0 && rng.Float64() < p.Delay {
			f.Delay = time.Duration(1 + rng.Int64N(int64(p.MaxDelay)))
		}
		return f
	}
}
