package routes

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	iofs "io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/vfs"
)

// The segment log keeps records out of the LSM tree. Each group the committer
// takes is appended, every record whole (meta and body), to the current file
// under <journal>/segments (000001.log, 000002.log, ...) with one write and one
// fdatasync: the journal's only synced write. The committer then writes the
// records' index entries to Pebble without a sync, each meta carrying the
// record's place in the log (segment, offset, length) instead of its body, and
// the log position indexed so far under 'i' in the same batch. At open, every
// record the log holds after that position is indexed again: an index lost
// with the machine is rebuilt from the log, so every record whose Append
// returned is found.
//
// Bodies were most of the bytes Pebble wrote, and it rewrote them at every
// level: with them out, compactions move index entries of a few hundred bytes
// per record instead of kilobytes.
//
// A record in a segment:
//
//	crc32c (4, little-endian) | length n (4, little-endian) | payload (n bytes)
//	payload: id (8, big-endian) | uvarint len(meta) | meta | body
//
// The checksum (Castagnoli) covers the length and the payload. A segment ends at
// its end of file, or at the first record cut short or failing its checksum: a
// torn write, whose Append never returned. At open such a tail is cut off, and
// writing starts in a new segment, so a file is only ever appended to by the
// run that created it.
const (
	segmentDirName = "segments"
	// segmentSize is where the writer rolls to a new file: large enough that a
	// busy engine rolls about once a second, with a directory sync each time.
	segmentSize   = 64 << 20
	segmentHeader = 8
	// segmentReaders caps the files kept open for reading records that are
	// not in the tail cache.
	segmentReaders = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a record the scan cannot read whole: the end of the segment's
// good records.
var errTorn = errors.New("torn record")

// segPos is a position in the log: a segment and a byte offset in it.
type segPos struct {
	seg uint64
	off int64
}

// segLoc is where one record lies in the log, header included.
type segLoc struct {
	segPos
	n int64
}

func (l segLoc) end() segPos { return segPos{l.seg, l.off + l.n} }

// appendSegmentRecord appends one record in the log's format to dst.
func appendSegmentRecord(dst []byte, id ID, meta, body []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, segmentHeader)...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(id))
	dst = binary.AppendUvarint(dst, uint64(len(meta)))
	dst = append(dst, meta...)
	dst = append(dst, body...)
	binary.LittleEndian.PutUint32(dst[start+4:], uint32(len(dst)-start-segmentHeader))
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// parseSegmentRecord checks one record, header included, and returns its parts,
// which alias rec. A record that fails its checksum is errTorn; one that passes
// it but does not parse is ErrCorrupt.
func parseSegmentRecord(rec []byte) (id ID, meta, body []byte, err error) {
	if len(rec) < segmentHeader || int64(binary.LittleEndian.Uint32(rec[4:])) != int64(len(rec)-segmentHeader) {
		return 0, nil, nil, errTorn
	}
	if binary.LittleEndian.Uint32(rec) != crc32.Checksum(rec[4:], castagnoli) {
		return 0, nil, nil, errTorn
	}
	p := rec[segmentHeader:]
	if len(p) < 8 {
		return 0, nil, nil, fmt.Errorf("%w: segment record shorter than its ID", ErrCorrupt)
	}
	id = ID(binary.BigEndian.Uint64(p))
	d := decoder{b: p[8:]}
	meta = d.bytes()
	if d.bad {
		return 0, nil, nil, fmt.Errorf("%w: segment record %d: meta truncated", ErrCorrupt, id)
	}
	return id, meta, d.b, nil
}

// segmentLog is the log's files. The writer side belongs to the committer; the
// readers are shared.
type segmentLog struct {
	fs  vfs.FS
	dir string

	// The file being appended to, its number and size. err, once set, is
	// returned by every later append: after a failed write or sync the file's
	// contents are unknown, and nothing may be appended after them.
	w     vfs.File
	wNum  uint64
	wSize int64
	err   error

	mu      sync.Mutex
	readers map[uint64]*segReader
	clock   uint64
}

// segReader is a file open for reading, shared by concurrent reads.
type segReader struct {
	f    vfs.File
	refs int
	used uint64 // the clock at its last use, to close the least recent
	// removed marks a file removed while it was being read: the last read
	// closes it, so that its disk space is freed.
	removed bool
}

// openSegmentLog opens the log under journalDir, creating its directory unless
// readOnly. A read-only open of a journal without one (written before the log
// existed) finds an empty log.
func openSegmentLog(fsys vfs.FS, journalDir string, readOnly bool) (*segmentLog, error) {
	s := &segmentLog{fs: fsys, dir: fsys.PathJoin(journalDir, segmentDirName), readers: map[uint64]*segReader{}}
	if readOnly {
		return s, nil
	}
	if err := createDir(fsys, s.dir); err != nil {
		return nil, fmt.Errorf("segment log: %w", err)
	}
	names, err := fsys.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("segment log: %w", err)
	}
	for _, name := range names {
		// A copy left by a truncation cut short (see truncate).
		if strings.HasSuffix(name, ".tmp") {
			if err := fsys.Remove(fsys.PathJoin(s.dir, name)); err != nil {
				return nil, fmt.Errorf("segment log: %w", err)
			}
		}
	}
	return s, nil
}

func (s *segmentLog) path(num uint64) string {
	return s.fs.PathJoin(s.dir, fmt.Sprintf("%06d.log", num))
}

// list returns the segments' numbers in order.
func (s *segmentLog) list() ([]uint64, error) {
	names, err := s.fs.List(s.dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var nums []uint64
	for _, name := range names {
		base, ok := strings.CutSuffix(name, ".log")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(base, 10, 64); err == nil && n > 0 {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// segmentEnd is what a scan found in one segment: where its good records end,
// and its size; a segment whose size is larger has a torn tail.
type segmentEnd struct {
	num        uint64
	good, size int64
	records    int // records the scan passed on
}

// scan calls fn with every record from position from on, in log order, and
// returns what it found in each segment it read. meta and body are valid during
// the call only.
func (s *segmentLog) scan(from segPos, fn func(loc segLoc, id ID, meta, body []byte) error) ([]segmentEnd, error) {
	nums, err := s.list()
	if err != nil {
		return nil, err
	}
	if from.off > 0 && !slices.Contains(nums, from.seg) {
		return nil, fmt.Errorf("%w: segment %d, indexed up to offset %d, is missing", ErrCorrupt, from.seg, from.off)
	}
	var ends []segmentEnd
	for _, num := range nums {
		if num < from.seg {
			continue
		}
		off := int64(0)
		if num == from.seg {
			off = from.off
		}
		end, err := s.scanSegment(num, off, fn)
		if err != nil {
			return nil, err
		}
		ends = append(ends, end)
	}
	return ends, nil
}

func (s *segmentLog) scanSegment(num uint64, off int64, fn func(segLoc, ID, []byte, []byte) error) (segmentEnd, error) {
	end := segmentEnd{num: num, good: off}
	f, err := s.fs.Open(s.path(num))
	if err != nil {
		return end, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return end, err
	}
	end.size = st.Size()
	if off > end.size {
		return end, fmt.Errorf("%w: segment %d ends at %d, before the indexed position %d", ErrCorrupt, num, end.size, off)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, end.size-off), 1<<20)
	var buf []byte
	for end.good < end.size {
		buf = slices.Grow(buf[:0], segmentHeader)[:segmentHeader]
		if _, err := io.ReadFull(r, buf); err != nil {
			break // a header cut short: torn
		}
		n := int64(binary.LittleEndian.Uint32(buf[4:]))
		if n > end.size-end.good-segmentHeader {
			break // longer than what is left: torn
		}
		buf = slices.Grow(buf, int(n))[:segmentHeader+int(n)]
		if _, err := io.ReadFull(r, buf[segmentHeader:]); err != nil {
			return end, err
		}
		id, meta, body, err := parseSegmentRecord(buf)
		if errors.Is(err, errTorn) {
			break
		} else if err != nil {
			return end, fmt.Errorf("segment %d offset %d: %w", num, end.good, err)
		}
		loc := segLoc{segPos{num, end.good}, int64(len(buf))}
		if err := fn(loc, id, meta, body); err != nil {
			return end, err
		}
		end.good += loc.n
		end.records++
	}
	return end, nil
}

// truncate cuts segment num to its first size bytes, durably: the good part is
// copied to a new file, synced and renamed over the old one (the file system
// interface has no truncate). A crash midway leaves the old file and a .tmp
// copy that the next open removes.
func (s *segmentLog) truncate(num uint64, size int64) error {
	name := s.path(num)
	tmp := name + ".tmp"
	src, err := s.fs.Open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := s.fs.Create(tmp)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, io.NewSectionReader(src, 0, size))
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, name)
	}
	if err == nil {
		err = s.syncDir()
	}
	return err
}

// syncFile makes segment num durable as it stands, for records that reached the
// file but whose group never synced: they are about to be indexed.
func (s *segmentLog) syncFile(num uint64) error { return syncAndClose(s.fs.Open(s.path(num))) }

func (s *segmentLog) syncDir() error { return syncAndClose(s.fs.OpenDir(s.dir)) }

// syncAndClose syncs f, as opened with err, and closes it.
func syncAndClose(f vfs.File, err error) error {
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// startWriting creates the segment that appends go to: a new file numbered
// after every existing one, or the last one when it is empty.
func (s *segmentLog) startWriting() error {
	nums, err := s.list()
	if err != nil {
		return err
	}
	num := uint64(1)
	if len(nums) > 0 {
		num = nums[len(nums)-1] + 1
		if st, err := s.fs.Stat(s.path(nums[len(nums)-1])); err == nil && st.Size() == 0 {
			num = nums[len(nums)-1]
		}
	}
	return s.create(num)
}

// create starts segment num and makes its directory entry durable.
func (s *segmentLog) create(num uint64) error {
	f, err := s.fs.Create(s.path(num))
	if err != nil {
		return err
	}
	if err := s.syncDir(); err != nil {
		f.Close()
		return err
	}
	s.w, s.wNum, s.wSize = f, num, 0
	return nil
}

// append writes a group's records, encoded by appendSegmentRecord, and syncs
// them. It returns where the group starts; a group never spans two segments.
func (s *segmentLog) append(group []byte) (segPos, error) {
	if s.err != nil {
		return segPos{}, s.err
	}
	if s.wSize > 0 && s.wSize+int64(len(group)) > segmentSize {
		// The file is complete and synced: the last group's sync covered it.
		err := s.w.Close()
		if err == nil {
			err = s.create(s.wNum + 1)
		}
		if err != nil {
			s.err = fmt.Errorf("segment log: roll to segment %d: %w", s.wNum+1, err)
			return segPos{}, s.err
		}
	}
	at := segPos{s.wNum, s.wSize}
	// vfs.File.Write may modify what it is given; the tail cache took its own
	// copy of the records before this.
	if _, err := s.w.Write(group); err != nil {
		s.err = fmt.Errorf("segment log: write segment %d: %w", s.wNum, err)
		return segPos{}, s.err
	}
	if err := s.w.SyncData(); err != nil {
		s.err = fmt.Errorf("segment log: sync segment %d: %w", s.wNum, err)
		return segPos{}, s.err
	}
	s.wSize += int64(len(group))
	return at, nil
}

// read returns the meta and body of the record at loc, checking that it is
// record id.
func (s *segmentLog) read(loc segLoc, id ID) (meta, body []byte, err error) {
	r, err := s.acquire(loc.seg)
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, loc.n)
	_, err = r.f.ReadAt(buf, loc.off)
	s.release(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: record %d: segment %d offset %d: %w", ErrCorrupt, id, loc.seg, loc.off, err)
	}
	got, meta, body, err := parseSegmentRecord(buf)
	switch {
	case errors.Is(err, errTorn):
		return nil, nil, fmt.Errorf("%w: record %d: segment %d offset %d: checksum", ErrCorrupt, id, loc.seg, loc.off)
	case err != nil:
		return nil, nil, err
	case got != id:
		return nil, nil, fmt.Errorf("%w: record %d: segment %d offset %d holds record %d", ErrCorrupt, id, loc.seg, loc.off, got)
	}
	return meta, body, nil
}

// acquire returns segment num open for reading, opening it when needed and
// closing the least recently used unreferenced file beyond segmentReaders.
func (s *segmentLog) acquire(num uint64) (*segReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock++
	if r, ok := s.readers[num]; ok {
		r.refs++
		r.used = s.clock
		return r, nil
	}
	f, err := s.fs.Open(s.path(num))
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d: %w", ErrCorrupt, num, err)
	}
	r := &segReader{f: f, refs: 1, used: s.clock}
	s.readers[num] = r
	for len(s.readers) > segmentReaders {
		var oldest uint64
		var victim *segReader
		for n, c := range s.readers {
			if c.refs == 0 && (victim == nil || c.used < victim.used) {
				oldest, victim = n, c
			}
		}
		if victim == nil {
			break // every file is being read; close some later
		}
		victim.f.Close()
		delete(s.readers, oldest)
	}
	return r, nil
}

func (s *segmentLog) release(r *segReader) {
	s.mu.Lock()
	r.refs--
	if r.refs == 0 && r.removed {
		r.f.Close()
	}
	s.mu.Unlock()
}

// remove deletes segment num, which must not be the one appended to, and
// returns its size. Its reader, if open, is closed once no read uses it: an
// open file keeps its disk space. The directory is not synced; see syncDir.
func (s *segmentLog) remove(num uint64) (int64, error) {
	s.mu.Lock()
	if r, ok := s.readers[num]; ok {
		delete(s.readers, num)
		if r.refs == 0 {
			r.f.Close()
		} else {
			r.removed = true
		}
	}
	s.mu.Unlock()
	name := s.path(num)
	var size int64
	if st, err := s.fs.Stat(name); err == nil {
		size = st.Size()
	}
	if err := s.fs.Remove(name); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return 0, err
	}
	return size, nil
}

// diskBytes is the size of every segment file; 0 when they cannot be listed.
func (s *segmentLog) diskBytes() int64 {
	nums, err := s.list()
	if err != nil {
		return 0
	}
	var n int64
	for _, num := range nums {
		if st, err := s.fs.Stat(s.path(num)); err == nil {
			n += st.Size()
		}
	}
	return n
}

// close closes every file; no read or append may be under way.
func (s *segmentLog) close() error {
	var err error
	if s.w != nil {
		err = s.w.Close()
		s.w = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, r := range s.readers {
		if cerr := r.f.Close(); err == nil {
			err = cerr
		}
		delete(s.readers, n)
	}
	return err
}
