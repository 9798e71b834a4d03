package kinesisfake

import (
	"encoding/base64"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// iterator is what a shard iterator encodes: a position in a shard of one
// incarnation of a stream (its creation time), and when the iterator was
// issued, for its expiry.
type iterator struct {
	stream, shardID string
	created         time.Time // the stream's
	pos             int       // see shard.end
	issued          time.Time
}

func (it iterator) encode() string {
	return encodeFields("it2", it.stream, it.shardID, strconv.Itoa(it.pos), formatTime(it.issued), formatTime(it.created))
}

func decodeIterator(s string) (iterator, error) {
	f, ok := decodeFields(s, "it2", 6)
	if !ok {
		return iterator{}, invalidArgument("invalid ShardIterator")
	}
	it := iterator{stream: f[1], shardID: f[2]}
	var err error
	if it.pos, err = strconv.Atoi(f[3]); err != nil || it.pos < 0 {
		return iterator{}, invalidArgument("invalid ShardIterator")
	}
	var ok2 bool
	it.issued, ok = parseTime(f[4])
	it.created, ok2 = parseTime(f[5])
	if !ok || !ok2 {
		return iterator{}, invalidArgument("invalid ShardIterator")
	}
	return it, nil
}

// listToken is what a ListShards NextToken encodes: the request, where the
// next page starts, and when the token was issued, for its expiry.
type listToken struct {
	stream     string
	after      string // the last shard ID listed: the next page lists IDs above it
	filter     types.ShardFilterType
	filterID   string
	filterTime time.Time
	issued     time.Time
}

func (t listToken) encode() string {
	return encodeFields("lt1", t.stream, t.after, string(t.filter), t.filterID, formatTime(t.filterTime), formatTime(t.issued))
}

func decodeListToken(s string) (listToken, error) {
	f, ok := decodeFields(s, "lt1", 7)
	if !ok {
		return listToken{}, invalidArgument("invalid NextToken")
	}
	t := listToken{stream: f[1], after: f[2], filter: types.ShardFilterType(f[3]), filterID: f[4]}
	var ok1, ok2 bool
	t.filterTime, ok1 = parseTime(f[5])
	t.issued, ok2 = parseTime(f[6])
	if !ok1 || !ok2 {
		return listToken{}, invalidArgument("invalid NextToken")
	}
	return t, nil
}

// match reports whether the token's shard filter keeps sh.
func (t listToken) match(sh *shard) bool {
	if t.after != "" && sh.id <= t.after { // IDs are fixed width: lexical order is creation order
		return false
	}
	switch t.filter {
	case types.ShardFilterTypeAfterShardId:
		return sh.id > t.filterID
	case types.ShardFilterTypeAtLatest:
		return sh.open()
	case types.ShardFilterTypeAtTimestamp: // open at the time
		return !sh.created.After(t.filterTime) && (sh.open() || sh.closed.After(t.filterTime))
	case types.ShardFilterTypeFromTimestamp: // open at or since the time
		return sh.open() || !sh.closed.Before(t.filterTime)
	default: // none, AT_TRIM_HORIZON, FROM_TRIM_HORIZON: every shard not removed
		return true
	}
}

// Stream names and shard IDs never hold "|".
func encodeFields(fields ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(fields, "|")))
}

func decodeFields(s, version string, n int) ([]string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	f := strings.Split(string(raw), "|")
	return f, len(f) == n && f[0] == version
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, n), err == nil
}

// position returns where an iterator of the request opens in sh, at now. A
// sequence number already trimmed opens at the trim horizon, as AWS does; a
// timestamp ahead of now is refused, as AWS refuses one ahead of its clock.
func (sh *shard) position(in *kinesis.GetShardIteratorInput, now time.Time) (int, error) {
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
		return sh.trimmed, nil
	case types.ShardIteratorTypeLatest:
		return sh.end(), nil
	case types.ShardIteratorTypeAtTimestamp:
		if in.Timestamp == nil {
			return 0, invalidArgument("a Timestamp is required for AT_TIMESTAMP")
		}
		if in.Timestamp.After(now) {
			return 0, invalidArgument("The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: %d, currentTimestampInMillis: %d", in.Timestamp.UnixMilli(), now.UnixMilli())
		}
		for i, r := range sh.records {
			if !r.arrival.Before(*in.Timestamp) {
				return sh.trimmed + i, nil
			}
		}
		return sh.end(), nil
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		s := aws.ToString(in.StartingSequenceNumber)
		seq, ok := parseSeq(s)
		if !ok {
			return 0, invalidArgument("StartingSequenceNumber %q is not a sequence number of this stream", s)
		}
		if seq < sh.startSeq || (!sh.open() && seq > sh.endSeq) {
			return 0, invalidArgument("StartingSequenceNumber %s used in GetShardIterator on shard %s is invalid because it did not come from this shard", s, sh.id)
		}
		if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber {
			seq++
		}
		i := sort.Search(len(sh.records), func(i int) bool { return sh.records[i].seq >= seq })
		return sh.trimmed + i, nil
	default:
		return 0, invalidArgument("invalid ShardIteratorType %q", in.ShardIteratorType)
	}
}
