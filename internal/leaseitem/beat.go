package leaseitem

import (
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Beat is a kcl worker's heartbeat item (key WorkerKey(Worker)), which the
// worker writes every LeaseDuration/2 instead of renewing each lease.
type Beat struct {
	Worker   string // the WorkerID
	Counter  int64  // bumped by every beat
	Stopping bool   // the worker is shutting down: it releases its leases and takes none
	// Streams are the identifiers of the streams the worker reads, in a
	// multi-stream table; nil when the item does not say (a single-stream
	// table, or a kcl worker from before it was written): every stream.
	Streams []string
	// LeaseDuration is the worker's LeaseDuration; 0 when the item does not
	// say (a kcl worker from before it was written).
	LeaseDuration time.Duration
}

// ParseBeat reads a heartbeat item. A workerStopping that is not a boolean
// is read as false; a leaseCounter kcl cannot read is an *Error.
func ParseBeat(item map[string]types.AttributeValue) (Beat, error) {
	key, _ := item[AttrLeaseKey].(*types.AttributeValueMemberS)
	if key == nil {
		return Beat{}, &Error{Item: "heartbeat", Attr: AttrLeaseKey, Why: "missing or not a string"}
	}
	counter, err := Counter(item)
	if err != nil {
		return Beat{}, &Error{Item: "heartbeat", Key: key.Value, Attr: AttrCounter, Why: err.Error()}
	}
	stopping, _ := item[AttrStopping].(*types.AttributeValueMemberBOOL)
	b := Beat{Worker: strings.TrimPrefix(key.Value, WorkerKeyPrefix), Counter: counter, Stopping: stopping != nil && stopping.Value}
	if v, present := item[AttrStreams]; present {
		ss, ok := v.(*types.AttributeValueMemberSS)
		if !ok {
			return Beat{}, &Error{Item: "heartbeat", Key: key.Value, Attr: AttrStreams, Why: "not a string set"}
		}
		b.Streams = ss.Value
	}
	if ms, err := number(item, AttrLeaseDuration, false); err == nil { // one kcl cannot read says nothing
		b.LeaseDuration = time.Duration(ms) * time.Millisecond
	}
	return b, nil
}
