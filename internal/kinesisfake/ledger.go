package kinesisfake

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// record is one record put; its counters are guarded by Server.mu.
type record struct {
	stream, shardID string
	seq             uint64
	key             string
	data            []byte
	arrival         time.Time
	reads           int       // GetRecords replies that returned it
	lostReads       int       // replies that carried it but were lost to an AfterApply fault
	trimmedAt       time.Time // zero until retention or RemoveShard dropped it
}

func (r *record) toSDK() types.Record {
	return types.Record{
		SequenceNumber:              aws.String(formatSeq(r.seq)),
		PartitionKey:                aws.String(r.key),
		Data:                        append([]byte(nil), r.data...),
		ApproximateArrivalTimestamp: aws.Time(r.arrival),
		EncryptionType:              types.EncryptionTypeNone,
	}
}

// Record is the ledger's account of one record put, for a simulation to
// check what was read against what was written.
type Record struct {
	Stream         string
	ShardID        string
	SequenceNumber string
	PartitionKey   string
	Data           []byte
	Arrival        time.Time // ApproximateArrivalTimestamp: the server's clock at the put
	// Reads counts the GetRecords replies that returned the record.
	Reads int
	// LostReads counts the replies that carried it but were replaced by
	// the error of an AfterApply fault: the caller never saw them.
	LostReads int
	// Trimmed says retention (or RemoveShard) dropped the record, at
	// TrimmedAt on the server's clock. Trimmed with Reads 0 means it was
	// never read.
	Trimmed   bool
	TrimmedAt time.Time
}

// Records returns every record ever put in the stream, trimmed ones
// included, in sequence number order, those of its deleted incarnations
// first (DeleteStream); nil when there is none.
func (s *Server) Records(stream string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ledger []*record
	for _, st := range s.deleted[stream] {
		ledger = append(ledger, st.ledger...)
	}
	if st := s.streams[stream]; st != nil {
		ledger = append(ledger, st.ledger...)
	}
	if ledger == nil {
		return nil
	}
	out := make([]Record, len(ledger))
	for i, r := range ledger {
		out[i] = Record{
			Stream:         r.stream,
			ShardID:        r.shardID,
			SequenceNumber: formatSeq(r.seq),
			PartitionKey:   r.key,
			Data:           append([]byte(nil), r.data...),
			Arrival:        r.arrival,
			Reads:          r.reads,
			LostReads:      r.lostReads,
			Trimmed:        !r.trimmedAt.IsZero(),
			TrimmedAt:      r.trimmedAt,
		}
	}
	return out
}
