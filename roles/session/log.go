package session

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// The file: the magic header, then records, each [uvarint length][crc32c, 4 bytes, big-endian]
// [payload]. The checksum (Castagnoli) covers the length bytes and the payload, so a damaged length
// is caught as surely as a damaged payload.
const logMagic = "RMLOG01\n"

// MaxRecord is the largest record a Log holds.
const MaxRecord = 64 << 10

var (
	// ErrCorrupt: the log is damaged before its last record (or is not a log); nothing is dropped
	// silently, so Open refuses it. The error says at which offset.
	ErrCorrupt = errors.New("session: receipt log corrupt")
	// ErrRecordSize: a record is empty or larger than MaxRecord.
	ErrRecordSize = errors.New("session: record must be 1 to 65536 bytes")
	// ErrLogBroken: an append failed in a way that left the file's end unknown (a failed fsync, or
	// a partial write that could not be undone). The log takes no more appends; reopen it.
	ErrLogBroken = errors.New("session: receipt log unusable after a failed write; reopen it")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("session: receipt log closed")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// file is what a Log needs of its file; tests inject faults through it.
type file interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Stat() (fs.FileInfo, error)
	Close() error
}

// Log is a durable append-only log of opaque records. It is safe for concurrent use; one process
// at a time may have a file open as a Log.
type Log struct {
	mu      sync.Mutex
	f       file
	size    int64 // end of the last whole record
	count   int
	dropped int64
	broken  error
	closed  bool
}

// Open opens the log at path, creating it (and making its directory entry durable) if it does not
// exist. A record torn by a crash at the end is cut away (see Dropped); damage anywhere before it
// is an error wrapping ErrCorrupt.
func Open(path string) (*Log, error) {
	return open(path, func(f *os.File) file { return f })
}

func open(path string, wrap func(*os.File) file) (*Log, error) {
	created := true
	of, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		created = false
		of, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("session: open receipt log: %w", err)
	}
	l := &Log{f: wrap(of)}
	if err := l.load(path, created); err != nil {
		l.f.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) load(path string, created bool) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("session: open receipt log: %w", err)
	}
	size := st.Size()
	hdr := make([]byte, min(size, int64(len(logMagic))))
	if _, err := l.f.ReadAt(hdr, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("session: read receipt log: %w", err)
	}
	if !bytes.HasPrefix([]byte(logMagic), hdr) {
		return fmt.Errorf("%w: %s is not a receipt log (bad header)", ErrCorrupt, path)
	}
	if size < int64(len(logMagic)) {
		// New, or its creation was cut short: write the header.
		if _, err := l.f.WriteAt([]byte(logMagic), 0); err != nil {
			return fmt.Errorf("session: create receipt log: %w", err)
		}
		if err := l.f.Truncate(int64(len(logMagic))); err != nil {
			return fmt.Errorf("session: create receipt log: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("session: create receipt log: %w", err)
		}
		if created || size == 0 {
			if err := syncDir(filepath.Dir(path)); err != nil {
				return fmt.Errorf("session: create receipt log: %w", err)
			}
		}
		l.size, l.dropped = int64(len(logMagic)), size
		return nil
	}
	end, count, err := scan(l.f, size, false, nil)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, path)
	}
	l.size, l.count, l.dropped = end, count, size-end
	if end < size {
		if err := l.f.Truncate(end); err != nil {
			return fmt.Errorf("session: cut torn tail of receipt log: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("session: cut torn tail of receipt log: %w", err)
		}
	}
	return nil
}

// scan reads the records of r, which has size bytes, after the header, calling fn (if set) with
// each. It returns where the last whole record ends and how many there are. A damaged last record
// (incomplete, failing its checksum, or a tail of zeros) ends the scan without error unless strict;
// damage followed by more data is an error wrapping ErrCorrupt.
func scan(r io.ReaderAt, size int64, strict bool, fn func([]byte)) (end int64, count int, err error) {
	off := int64(len(logMagic))
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, size-off), 128<<10)
	var head [binary.MaxVarintLen64 + 4]byte
	payload := make([]byte, 0, 4096)
	torn := func(why string) (int64, int, error) {
		if strict {
			return off, count, fmt.Errorf("%w: %s at offset %d", ErrCorrupt, why, off)
		}
		return off, count, nil
	}
	for off < size {
		// The length, a uvarint.
		var n uint64
		hl := 0
		for {
			b, err := br.ReadByte()
			if err != nil {
				return torn("incomplete record header")
			}
			head[hl] = b
			hl++
			if b < 0x80 {
				var k int
				if n, k = binary.Uvarint(head[:hl]); k <= 0 {
					return damaged(r, off, size, strict, count, "bad record length")
				}
				break
			}
			if hl == binary.MaxVarintLen64 {
				return damaged(r, off, size, strict, count, "bad record length")
			}
		}
		if n == 0 || n > MaxRecord || hl != uvarintLen(n) {
			return damaged(r, off, size, strict, count, fmt.Sprintf("record length %d", n))
		}
		recEnd := off + int64(hl) + 4 + int64(n)
		if recEnd > size {
			return torn("incomplete record")
		}
		if _, err := io.ReadFull(br, head[hl:hl+4]); err != nil {
			return off, count, fmt.Errorf("session: read receipt log: %w", err)
		}
		want := binary.BigEndian.Uint32(head[hl : hl+4])
		payload = slicesGrow(payload, int(n))
		if _, err := io.ReadFull(br, payload); err != nil {
			return off, count, fmt.Errorf("session: read receipt log: %w", err)
		}
		crc := crc32.Update(crc32.Checksum(head[:hl], castagnoli), castagnoli, payload)
		if crc != want {
			if recEnd == size {
				return torn("checksum mismatch in the last record")
			}
			return off, count, fmt.Errorf("%w: checksum mismatch at offset %d, %d bytes before the end: the log is damaged in the middle",
				ErrCorrupt, off, size-off)
		}
		if fn != nil {
			fn(payload)
		}
		off, count = recEnd, count+1
	}
	return off, count, nil
}

// damaged classifies a record with an impossible length at off: a tail of zeros (space the file
// system allocated but a crash never filled) is torn; anything else is corruption.
func damaged(r io.ReaderAt, off, size int64, strict bool, count int, why string) (int64, int, error) {
	if !strict {
		zeros, err := allZero(r, off, size)
		if err != nil {
			return off, count, fmt.Errorf("session: read receipt log: %w", err)
		}
		if zeros {
			return off, count, nil
		}
	}
	return off, count, fmt.Errorf("%w: %s at offset %d, %d bytes before the end", ErrCorrupt, why, off, size-off)
}

func allZero(r io.ReaderAt, off, size int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for off < size {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if err != nil && !(errors.Is(err, io.EOF) && off >= size) {
			return false, err
		}
	}
	return true, nil
}

func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}

func slicesGrow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// encode frames rec as it is stored.
func encode(rec []byte) []byte {
	buf := make([]byte, 0, binary.MaxVarintLen64+4+len(rec))
	buf = binary.AppendUvarint(buf, uint64(len(rec)))
	crc := crc32.Update(crc32.Checksum(buf, castagnoli), castagnoli, rec)
	buf = binary.BigEndian.AppendUint32(buf, crc)
	return append(buf, rec...)
}

// Append adds rec to the log and returns once it is on disk (fsynced). A failed append leaves the
// log as it was when it can (a disk that is full may be retried later); otherwise the log is
// broken (ErrLogBroken) and must be reopened, which cuts any torn record away.
func (l *Log) Append(rec []byte) error {
	if len(rec) == 0 || len(rec) > MaxRecord {
		return fmt.Errorf("%w: got %d", ErrRecordSize, len(rec))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.broken != nil:
		return l.broken
	}
	buf := encode(rec)
	if _, err := l.f.WriteAt(buf, l.size); err != nil {
		if terr := l.f.Truncate(l.size); terr != nil {
			l.broken = fmt.Errorf("%w: %v", ErrLogBroken, errors.Join(err, terr))
			return l.broken
		}
		return fmt.Errorf("session: append receipt: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		// After a failed fsync the file's contents are unknown.
		l.broken = fmt.Errorf("%w: %v", ErrLogBroken, err)
		return l.broken
	}
	l.size += int64(len(buf))
	l.count++
	return nil
}

// Records reads every record back, oldest first. A record that no longer passes its checksum is an
// error wrapping ErrCorrupt.
func (l *Log) Records() ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	out := make([][]byte, 0, l.count)
	_, _, err := scan(l.f, l.size, true, func(rec []byte) { out = append(out, bytes.Clone(rec)) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Len is the number of records in the log.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// Dropped is how many bytes of a torn tail Open cut away (0 when the log was whole).
func (l *Log) Dropped() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// Close closes the file. Every appended record is already on disk.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.f.Close()
}

// syncDir makes a new directory entry durable. File systems that cannot sync a directory say so
// with EINVAL or ENOTSUP; for them there is nothing more to do.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
