package kcl

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// KPL aggregated records (the Kinesis Producer Library's format): the magic
// bytes, a protobuf AggregatedRecord, then the MD5 of the protobuf bytes.
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
var kplMagic = []byte{0xF3, 0x89, 0x9A, 0xC2}

// isAggregated reports whether data starts with the KPL magic bytes. It is
// called on every record, so it is kept small enough to inline.
func isAggregated(data []byte) bool {
	return len(data) >= 4 && data[0] == kplMagic[0] && data[1] == kplMagic[1] && data[2] == kplMagic[2] && data[3] == kplMagic[3]
}

// userRecord is one user record inside an aggregate. data aliases the
// aggregate's bytes, with no room past its end: an append copies it.
type userRecord struct {
	partitionKey    string
	explicitHashKey string
	data            []byte
}

// kplSplitter splits one KPL aggregated record into its user records, one
// at a time, so that nothing is held per user record beyond those handed
// out. The zero value is ready for open; one splitter serves the
// aggregates of a page in turn (pageRecords), reusing its tables. It is
// used by one goroutine.
//
//   - open checks the whole aggregate first (MD5, protobuf, every key
//     index), so a malformed aggregate is known before any of its user
//     records is handed out.
//   - What it holds is the aggregate's bytes (aliased) and 5 bytes per
//     key-table entry, plus the room append grew the tables into. An
//     entry takes at least 2 bytes of the aggregate, so the tables hold
//     up to 3 times its size (measured: 3.0 at 5 kB, 2.6 at 1 MiB), and
//     up to 4 times for one of a few hundred bytes, whose tables double.
//   - Keys are made strings as user records ask for them. A key asked for
//     by consecutive user records is made once.
type kplSplitter struct {
	body    []byte   // the protobuf AggregatedRecord, aliasing the record's data
	rest    []byte   // the part of body not split yet
	pk, ehk keyTable // the partition and explicit hash key tables
	done    int      // user records returned so far
	seen    []uint8  // strays' look at each key-table entry, kept for its room
}

// keyTable is a key table of an aggregate: where each entry is, and the
// entry last made a string.
type keyTable struct {
	at      []uint32 // offset in the body of each entry's field
	last    uint64   // the index of lastKey; none when out of at
	lastKey string
}

// key returns entry i of the table in body as a string, made once for a
// run of user records under one key.
func (t *keyTable) key(body []byte, i uint64) (string, error) {
	if i == t.last {
		return t.lastKey, nil
	}
	if i >= uint64(len(t.at)) {
		return "", fmt.Errorf("aggregate: key index %d out of a table of %d", i, len(t.at))
	}
	field := body[t.at[i]:]
	_, v, err := nextField(&field)
	if err != nil {
		return "", err
	}
	t.last, t.lastKey = i, string(v)
	return t.lastKey, nil
}

// open starts splitting data, a KPL aggregated record (isAggregated). err
// says why it is malformed (bad MD5, bad protobuf, an index out of its
// table, no user record); the caller then delivers it whole.
func (s *kplSplitter) open(data []byte) error {
	*s = kplSplitter{pk: keyTable{at: s.pk.at[:0], last: math.MaxUint64}, ehk: keyTable{at: s.ehk.at[:0], last: math.MaxUint64}, seen: s.seen}
	if len(data) < len(kplMagic)+md5.Size {
		return errors.New("aggregate shorter than its magic bytes and MD5")
	}
	if len(data) > math.MaxUint32 {
		return errors.New("aggregate over 4 GiB")
	}
	body := data[len(kplMagic) : len(data)-md5.Size]
	if sum := md5.Sum(body); !bytes.Equal(sum[:], data[len(data)-md5.Size:]) {
		return errors.New("aggregate MD5 does not match")
	}
	var maxPK, maxEHK uint64
	var hasEHK, lacks bool
	n := 0 // user records
	for rest := body; len(rest) > 0; {
		off := uint32(len(body) - len(rest))
		num, v, err := nextField(&rest)
		if err != nil {
			return err
		}
		switch num {
		case 1, 2:
			if num == 1 {
				s.pk.at = append(s.pk.at, off)
			} else {
				s.ehk.at = append(s.ehk.at, off)
			}
		case 3:
			r, err := parseRawRecord(v, n)
			if err != nil {
				return err
			}
			n++
			lacks = lacks || !r.hasPK || !r.hasData
			maxPK = max(maxPK, r.pk)
			if r.hasEHK {
				hasEHK, maxEHK = true, max(maxEHK, r.ehk)
			}
		}
	}
	if lacks || n > 0 && maxPK >= uint64(len(s.pk.at)) || hasEHK && maxEHK >= uint64(len(s.ehk.at)) {
		return s.firstBadRecord(body)
	}
	if n == 0 {
		return errors.New("aggregate holds no record")
	}
	s.body, s.rest = body, body
	return nil
}

// nextField consumes the next field of an AggregatedRecord from *b. num is
// 0 for a field kcl does not read (skipped); v is a table entry (1, 2) or a
// record (3).
func nextField(b *[]byte) (num protowire.Number, v []byte, err error) {
	num, typ, n := protowire.ConsumeTag(*b)
	if n < 0 {
		return 0, nil, fmt.Errorf("aggregate: %w", protowire.ParseError(n))
	}
	*b = (*b)[n:]
	if typ != protowire.BytesType || num < 1 || num > 3 {
		n = protowire.ConsumeFieldValue(num, typ, *b)
		if n < 0 {
			return 0, nil, fmt.Errorf("aggregate field %d: %w", num, protowire.ParseError(n))
		}
		*b = (*b)[n:]
		return 0, nil, nil
	}
	v, n = protowire.ConsumeBytes(*b)
	if n < 0 {
		return 0, nil, fmt.Errorf("aggregate field %d: %w", num, protowire.ParseError(n))
	}
	*b = (*b)[n:]
	return num, v, nil
}

// firstBadRecord says what is wrong with the first user record of body
// that lacks its partition key index or data, or whose index is out of its
// table. open calls it once it knows there is one.
func (s *kplSplitter) firstBadRecord(body []byte) error {
	for i := 0; len(body) > 0; {
		num, v, _ := nextField(&body) // open parsed it all
		if num != 3 {
			continue
		}
		r, _ := parseRawRecord(v, i)
		switch {
		case !r.hasPK || !r.hasData:
			return fmt.Errorf("aggregate record %d lacks its partition key index or data", i)
		case r.pk >= uint64(len(s.pk.at)):
			return fmt.Errorf("aggregate record %d: partition key index %d out of a table of %d", i, r.pk, len(s.pk.at))
		case r.hasEHK && r.ehk >= uint64(len(s.ehk.at)):
			return fmt.Errorf("aggregate record %d: explicit hash key index %d out of a table of %d", i, r.ehk, len(s.ehk.at))
		}
		i++
	}
	return errors.New("aggregate record malformed") // not reached: open found one
}

// next returns the next user record; ok is false once all were returned.
// err is not nil only if the aggregate's bytes changed since open, which
// checked them: then next returns no more.
func (s *kplSplitter) next() (u userRecord, ok bool, err error) {
	for len(s.rest) > 0 {
		num, v, err := nextField(&s.rest)
		if err == nil && num != 3 {
			continue
		}
		var r kplRecord
		if err == nil {
			r, err = parseRawRecord(v, s.done)
		}
		if err == nil && (!r.hasPK || !r.hasData) {
			err = fmt.Errorf("aggregate record %d lacks its partition key index or data", s.done)
		}
		if err == nil {
			u.partitionKey, err = s.pk.key(s.body, r.pk)
		}
		if err == nil && r.hasEHK {
			u.explicitHashKey, err = s.ehk.key(s.body, r.ehk)
		}
		if err != nil {
			s.rest = nil
			return userRecord{}, false, err
		}
		u.data = r.data[:len(r.data):len(r.data)]
		s.done++
		return u, true, nil
	}
	return u, false, nil
}

// kplRecord is one record of an aggregate as encoded: indexes into the
// aggregate's key tables, and the data.
type kplRecord struct {
	pk, ehk       uint64
	hasPK, hasEHK bool
	hasData       bool
	data          []byte
}

// parseRawRecord parses v, the encoding of the aggregate's record number i.
func parseRawRecord(v []byte, i int) (kplRecord, error) {
	var r kplRecord
	for len(v) > 0 {
		rnum, rtyp, n := protowire.ConsumeTag(v)
		if n < 0 {
			return r, fmt.Errorf("aggregate record %d: %w", i, protowire.ParseError(n))
		}
		v = v[n:]
		switch {
		case rnum == 1 && rtyp == protowire.VarintType:
			r.pk, n = protowire.ConsumeVarint(v)
			r.hasPK = true
		case rnum == 2 && rtyp == protowire.VarintType:
			r.ehk, n = protowire.ConsumeVarint(v)
			r.hasEHK = true
		case rnum == 3 && rtyp == protowire.BytesType:
			r.data, n = protowire.ConsumeBytes(v)
			r.hasData = true
		default:
			n = protowire.ConsumeFieldValue(rnum, rtyp, v)
		}
		if n < 0 {
			return r, fmt.Errorf("aggregate record %d field %d: %w", i, rnum, protowire.ParseError(n))
		}
		v = v[n:]
	}
	return r, nil
}

// hashRange is a shard's hash-key range, as 128-bit big-endian numbers. The
// zero value is a range not known yet, which contains every key.
type hashRange struct {
	first, last [16]byte
	known       bool
}

// newHashRange returns the range from first to last, as ListShards gave
// them; unknown when either is missing or out of 128 bits.
func newHashRange(first, last *big.Int) hashRange {
	if first == nil || last == nil || first.Sign() < 0 || last.Sign() < 0 || first.BitLen() > 128 || last.BitLen() > 128 {
		return hashRange{}
	}
	var r hashRange
	first.FillBytes(r.first[:])
	last.FillBytes(r.last[:])
	r.known = true
	return r
}

// whole reports whether the range is known to hold every key (a stream of
// one shard): then no key needs a look.
func (r hashRange) whole() bool {
	return r.known && r.first == [16]byte{} && r.last == [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
}

// holds reports whether the shard owns user record u: whether the key
// Kinesis routes u by, its explicit hash key or else the MD5 of its
// partition key, is in the range. An explicit hash key that is no number of
// 128 bits is held: what cannot be judged is not called misplaced.
func (r hashRange) holds(u userRecord) bool {
	return r.holdsKey([]byte(u.partitionKey), u.explicitHashKey, u.explicitHashKey != "")
}

// holdsKey is holds for a partition key pk and, when hasEHK, an explicit
// hash key ehk, which routes the record instead.
func (r hashRange) holdsKey(pk []byte, ehk string, hasEHK bool) bool {
	if !r.known {
		return true
	}
	var k [16]byte
	if hasEHK {
		n, ok := new(big.Int).SetString(ehk, 10)
		if !ok || n.Sign() < 0 || n.BitLen() > 128 {
			return true
		}
		n.FillBytes(k[:])
	} else {
		k = md5.Sum(pk)
	}
	return bytes.Compare(k[:], r.first[:]) >= 0 && bytes.Compare(k[:], r.last[:]) <= 0
}

// strays reports whether any user record of the aggregate opened last has
// a key outside r (holdsKey), and how many user records it holds in all.
// It is called after open succeeded and before next; it looks at each
// key-table entry once, however many user records share it, and holds
// nothing after it returns.
func (s *kplSplitter) strays(r hashRange) (stray bool, n int) {
	if !r.known || r.whole() {
		return false, 0
	}
	const unknown, in, out = 0, 1, 2
	s.seen = slices.Grow(s.seen[:0], len(s.pk.at)+len(s.ehk.at))[:len(s.pk.at)+len(s.ehk.at)]
	clear(s.seen)
	pkSeen, ehkSeen := s.seen[:len(s.pk.at)], s.seen[len(s.pk.at):]
	entry := func(at uint32) []byte {
		field := s.body[at:]
		_, v, _ := nextField(&field) // open parsed it
		return v
	}
	look := func(seen []uint8, i uint64, ehk bool) bool {
		if seen[i] == unknown {
			var holds bool
			if ehk {
				holds = r.holdsKey(nil, string(entry(s.ehk.at[i])), true)
			} else {
				holds = r.holdsKey(entry(s.pk.at[i]), "", false)
			}
			seen[i] = out
			if holds {
				seen[i] = in
			}
		}
		return seen[i] == in
	}
	for rest := s.body; len(rest) > 0; {
		num, v, _ := nextField(&rest) // open parsed it all
		if num != 3 {
			continue
		}
		rec, _ := parseRawRecord(v, n)
		n++
		switch {
		case stray: // counting the rest
		case rec.hasEHK:
			stray = !look(ehkSeen, rec.ehk, true)
		default:
			stray = !look(pkSeen, rec.pk, false)
		}
	}
	return stray, n
}
