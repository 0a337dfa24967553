"""rosbag2 input and output for replay: MCAP or sqlite3 bags read in log-time order, damage reported.

:class:`BagReader` reads a rosbag2 directory (``metadata.yaml`` plus its storage files, split bags
included) or a single ``.mcap`` / ``.db3`` file with rosbags' ``Reader``. Messages come in log-time
order (ties in recording order), as raw CDR bytes. The bag's embedded message definitions are
registered in a rosbags typestore (:attr:`BagReader.typestore`), so types this environment does not
know are still described, and a definition that differs from the installed one is reported by
:meth:`BagReader.require`.

rosbags refuses a truncated MCAP file (no footer) or sqlite3 database, and stops at a corrupt MCAP
chunk without delivering its messages. Where rosbags fails, the recovery reader walks the storage
records itself: everything before the damage is delivered, then :class:`BagDamaged` says where and
what. A bag that ends with fewer messages than its metadata lists is damaged too.

:class:`BagWriter` writes raw CDR messages into a new bag with rosbags' ``Writer``, embedding the
definitions (the package's messages included), and records what rosbag2 on ROS 2 Jazzy records:
``ros_distro: jazzy`` (metadata.yaml, the storage's copy of it, the sqlite3 schema table), each
topic's offered QoS profiles, and its RIHS01 type hash (metadata.yaml; MCAP channel metadata
``topic_type_hash`` next to ``offered_qos_profiles``).
"""
from __future__ import annotations

import heapq
import io
import itertools
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple, cast

import yaml
from rosbags.interfaces import ConnectionExtRosbag2, MessageDefinitionFormat, Qos
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import Channel, McapReader, McapWriter, write_channel, write_string
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import get_types_from_idl, get_types_from_msg
from rosbags.typesys.base import TypesysError

from ..scenes.bag import STORAGES
from ..scenes.bag import typestore as package_typestore

try:
    from compression import zstd  # Python >= 3.14
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd

_MCAP_MAGIC = b'\x89MCAP0\r\n'
ROS_DISTRO = 'jazzy'
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')


class BagError(Exception):
    """A bag that cannot be used: missing, not a rosbag2, or without a topic or type replay needs."""


class BagDamaged(BagError):
    """The bag is damaged (corrupt or truncated); every message before the damage was delivered.

    Attributes:
        delivered: messages delivered before the damage.
        last_ns: log time of the last delivered message (None: none was).
    """

    def __init__(self, message: str, delivered: int = 0, last_ns: Optional[int] = None):
        super().__init__(message)
        self.delivered = delivered
        self.last_ns = last_ns


@dataclass(frozen=True)
class Topic:
    """A topic of a bag: its type, the embedded definition (format 'ros2msg' or 'ros2idl', or '' when
    the bag has none), its serialization format and message count (None when unknown)."""

    name: str
    msgtype: str
    definition: str = ''
    definition_format: str = ''
    serialization: str = 'cdr'
    count: Optional[int] = None


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


class _Damage(Exception):
    """Raised inside a storage reader at the damage; the reader adds the context."""


# --------------------------------------------------------------------------- MCAP

def _string(buf: memoryview, pos: int) -> Tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    if pos + 4 + n > len(buf):
        raise _Damage('string runs past its record')
    return bytes(buf[pos + 4:pos + 4 + n]).decode('utf-8', 'replace'), pos + 4 + n


def _decompress(data: bytes, compression: str, size: int, crc: int) -> bytes:
    if compression == '':
        raw = data
    elif compression == 'zstd':
        raw = zstd.decompress(data)
    elif compression == 'lz4':
        import lz4.frame
        raw = lz4.frame.decompress(data)
    else:
        raise _Damage(f'unsupported chunk compression {compression!r}')
    if len(raw) != size:
        raise _Damage(f'chunk decompresses to {len(raw)} bytes, its header says {size}')
    if crc and zlib.crc32(raw) != crc:
        raise _Damage('chunk checksum mismatch')
    return raw


def _where(pos) -> str:
    """'byte N' for a file offset, else the description given (e.g. a place inside a chunk)."""
    return f'byte {pos}' if isinstance(pos, int) else str(pos)


class _McapFile:
    """Records of one MCAP file: schemas, channels, and the chunks (or loose messages) in the data
    section, found by walking the top-level records up to the footer or the first damage."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, 'rb')
        self.size = os.fstat(self._file.fileno()).st_size
        self.schemas: Dict[int, Tuple[str, str, str]] = {}     # id -> (name, encoding, data)
        self.channels: Dict[int, Tuple[str, int, str]] = {}    # id -> (topic, schema id, message encoding)
        self.sources: List[Tuple[int, int, int]] = []          # (start log time, file offset, opcode)
        self.damage: Optional[str] = None
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._file.close()

    def _read(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(size)

    def _summary_definitions(self) -> bool:
        """Register the schemas and channels of the summary section (intact files); False without one."""
        tail = self._read(self.size - 37, 37) if self.size >= 8 + 37 else b''
        if len(tail) != 37 or tail[0] != 0x02 or tail[29:] != _MCAP_MAGIC:
            return False
        pos = _U64.unpack_from(tail, 9)[0]
        if not 8 < pos < self.size - 37:
            return False
        while pos < self.size - 37:
            header = self._read(pos, 9)
            op, length = header[0], _U64.unpack_from(header, 1)[0]
            if op in (0x03, 0x04):
                self._definition(op, memoryview(self._read(pos + 9, length)), pos)
            pos += 9 + length
        return bool(self.channels)

    def _scan(self) -> None:
        head = self._read(0, 9)
        if head[:8] != _MCAP_MAGIC:
            raise BagError(f'{self.path} is not an MCAP file (bad magic bytes)')
        try:
            indexed = self._summary_definitions()
        except (_Damage, struct.error):
            self.schemas.clear()
            self.channels.clear()
            indexed = False
        try:
            self._walk(indexed)
        except _Damage as exc:
            self.damage = str(exc)

    def _walk(self, indexed: bool) -> None:
        """Collect the chunks and loose messages of the data section (and, unless ``indexed``, the
        schemas and channels inside the chunks), up to the data end or the first damage."""
        pos = 8
        while True:
            header = self._read(pos, 9)
            if len(header) < 9:
                self.damage = (f'truncated: the file ends at byte {self.size} without an MCAP footer'
                               if not header else f'truncated: a record header at byte {pos} is cut off')
                return
            op, length = header[0], _U64.unpack_from(header, 1)[0]
            if pos + 9 + length > self.size:
                self.damage = (f'truncated or corrupt: the record at byte {pos} (opcode 0x{op:02x}) claims '
                               f'{length} bytes but the file ends at byte {self.size}')
                if op == 0x06 and self.size - pos >= 17:   # deliver what is left of the chunk
                    self.sources.append((_U64.unpack(self._read(pos + 9, 8))[0], pos, op))
                    self._chunk_definitions(pos)
                return
            if op in (0x02, 0x0F):       # footer, data end: the data section is complete
                return
            if op in (0x03, 0x04):
                self._definition(op, memoryview(self._read(pos + 9, length)), pos)
            elif op == 0x05:
                self.sources.append((_U64.unpack_from(self._read(pos + 9 + 6, 8))[0], pos, op))
            elif op == 0x06:
                start = _U64.unpack(self._read(pos + 9, 8))[0]
                self.sources.append((start, pos, op))
                if not indexed and not self._chunk_definitions(pos):
                    return
            pos += 9 + length

    def _definition(self, op: int, rec: memoryview, pos) -> None:
        """Register a schema (0x03) or channel (0x04) record found at ``pos`` (a byte offset, or
        where in a chunk, for the damage message)."""
        try:
            (key,) = _U16.unpack_from(rec, 0)
            if op == 0x03:
                name, p = _string(rec, 2)
                encoding, p = _string(rec, p)
                (n,) = _U32.unpack_from(rec, p)
                self.schemas[key] = (name, encoding, bytes(rec[p + 4:p + 4 + n]).decode('utf-8', 'replace'))
            else:
                (schema,) = _U16.unpack_from(rec, 2)
                topic, p = _string(rec, 4)
                encoding, _ = _string(rec, p)
                self.channels[key] = (topic, schema, encoding)
        except struct.error as exc:
            raise _Damage(f'{"schema" if op == 0x03 else "channel"} record at {_where(pos)} is cut short') from exc

    def _chunk_definitions(self, pos: int) -> bool:
        """Register the schemas and channels inside the chunk at ``pos``; False at damage."""
        try:
            for op, rec, at in self._chunk_records(pos):
                if op in (0x03, 0x04):
                    self._definition(op, rec, at)
        except _Damage as exc:
            self.damage = str(exc)    # the chunk still delivers its messages before the damage
            return False
        return True

    def _chunk_records(self, pos: int) -> Iterator[Tuple[int, memoryview, str]]:
        """(opcode, body, where) of every record in the chunk at ``pos``; raises :class:`_Damage`. An
        uncompressed chunk cut off by the end of the file yields its complete records first."""
        (length,) = _U64.unpack(self._read(pos + 1, 8))
        body = memoryview(self._read(pos + 9, length))
        try:
            size, crc = _U64.unpack_from(body, 16)[0], _U32.unpack_from(body, 24)[0]
            compression, p = _string(body, 28)
            (csize,) = _U64.unpack_from(body, p)
        except (struct.error, _Damage) as exc:
            raise _Damage(f'corrupt or truncated chunk header at byte {pos}') from exc
        cut = len(body) < length
        if not cut and p + 8 + csize > len(body):
            raise _Damage(f'corrupt chunk at byte {pos}: its data runs past the record')
        if cut and compression:
            raise _Damage(f'truncated: the file ends inside the {compression} chunk at byte {pos}')
        try:
            data = body[p + 8:p + 8 + csize] if cut else memoryview(
                _decompress(bytes(body[p + 8:p + 8 + csize]), compression, size, crc))
        except _Damage:
            raise
        except Exception as exc:  # noqa: BLE001 - any decompressor failure is damage
            raise _Damage(f'corrupt chunk at byte {pos}: {exc}') from exc
        at = 0
        while at < len(data):
            rlen = _U64.unpack_from(data, at + 1)[0] if at + 9 <= len(data) else None
            if rlen is None or at + 9 + rlen > len(data):
                if cut:
                    raise _Damage(f'truncated: the file ends inside the chunk at byte {pos}')
                raise _Damage(f'corrupt chunk at byte {pos}: the record at offset {at} is cut off or claims '
                              f'more than the {len(data) - at} bytes left')
            yield data[at], data[at + 9:at + 9 + rlen], f'offset {at} of the chunk at byte {pos}'
            at += 9 + rlen
        if cut:
            raise _Damage(f'truncated: the file ends inside the chunk at byte {pos}')

    def _message(self, rec: memoryview, where: str) -> Tuple[int, int, bytes]:
        if len(rec) < 22:
            raise _Damage(f'corrupt message record at {where}: {len(rec)} bytes')
        (channel,) = _U16.unpack_from(rec, 0)
        if channel not in self.channels:
            raise _Damage(f'corrupt message record at {where}: unknown channel {channel}')
        return _U64.unpack_from(rec, 6)[0], channel, bytes(rec[22:])

    def _source(self, pos: int, op: int) -> Iterator[Tuple[int, int, bytes]]:
        """(log time, channel, data) of a chunk (sorted by time, stable) or a loose message. A damaged
        chunk yields its messages before the damage, then raises."""
        if op == 0x05:
            (length,) = _U64.unpack(self._read(pos + 1, 8))
            yield self._message(memoryview(self._read(pos + 9, length)), f'byte {pos}')
            return
        messages, damage = [], None
        try:
            for rop, rec, where in self._chunk_records(pos):
                if rop == 0x05:
                    messages.append(self._message(rec, where))
                elif rop in (0x03, 0x04):
                    self._definition(rop, rec, pos)
        except _Damage as exc:
            damage = exc
        messages.sort(key=lambda m: m[0])
        yield from messages
        if damage is not None:
            raise damage

    def messages(self, channels: Iterable[int]) -> Iterator[Tuple[int, int, bytes]]:
        """(log time, channel, data) on ``channels`` in log-time order, ties in file order. Chunks are
        merged lazily: a chunk is read once every message before its start time was delivered."""
        wanted = set(channels)
        sources = sorted(self.sources)
        heap: list = []
        i = 0
        while heap or i < len(sources):
            while i < len(sources) and (not heap or sources[i][0] <= heap[0][0]):
                _, pos, op = sources[i]
                self._push(heap, self._source(pos, op), pos)
                i += 1
            if heap:
                t, pos, channel, data, it = heapq.heappop(heap)
                if channel in wanted:
                    yield t, channel, data
                self._push(heap, it, pos)
        if self.damage:
            raise _Damage(self.damage)

    @staticmethod
    def _push(heap: list, it: Iterator, pos: int) -> None:
        item = next(it, None)
        if item is not None:
            heapq.heappush(heap, (item[0], pos, item[1], item[2], it))


# --------------------------------------------------------------------------- sqlite3

class _Sqlite3File:
    """A rosbag2 sqlite3 database, opened read-only. A truncated file is read from a copy whose
    header lists only the pages that exist, so that sqlite reads up to the missing pages."""

    def __init__(self, path: Path):
        self.path = path
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        page, pages = self._header()
        size = path.stat().st_size
        self.damage = (f'truncated: the database has {size} of its {page * pages} bytes'
                       if size < page * pages else None)
        self._db = sqlite3.connect(f'file:{self._patched_copy(page) if self.damage else path}?immutable=1',
                                   uri=True)
        try:
            self._load()
        except sqlite3.DatabaseError as exc:
            self.close()
            if self.damage:
                raise BagDamaged(f'{path} is damaged: {self.damage}; nothing is readable ({exc})') from exc
            raise BagError(f'{path} is not a readable rosbag2 sqlite3 database: {exc}') from exc

    def _header(self) -> Tuple[int, int]:
        """(page size, page count) from the database header."""
        with open(self.path, 'rb') as f:
            head = f.read(100)
        if len(head) < 100 or not head.startswith(b'SQLite format 3\0'):
            raise BagError(f'{self.path} is not an sqlite3 database')
        page = struct.unpack_from('>H', head, 16)[0]
        return (65536 if page == 1 else page), struct.unpack_from('>I', head, 28)[0]

    def _patched_copy(self, page: int) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix='seem_ros_bag_')
        copy = Path(self._tmp.name) / self.path.name
        shutil.copyfile(self.path, copy)
        pages = -(-copy.stat().st_size // page)
        with open(copy, 'r+b') as f:
            f.truncate(pages * page)
            f.seek(28)
            f.write(struct.pack('>I', pages))
        return copy

    def _load(self) -> None:
        db = self._db
        if not db.execute('PRAGMA table_info(topics)').fetchall():
            raise BagError(f'{self.path} has no topics table: not a rosbag2 database')
        definitions = {}
        if db.execute("SELECT name FROM sqlite_master WHERE name='message_definitions'").fetchone():
            for msgtype, encoding, text in db.execute(
                    'SELECT topic_type, encoding, encoded_message_definition FROM message_definitions'):
                definitions[msgtype] = (text, encoding)
        self.topics = {tid: Topic(name, msgtype, *definitions.get(msgtype, ('', '')), serialization=fmt)
                       for tid, name, msgtype, fmt in
                       db.execute('SELECT id, name, type, serialization_format FROM topics')}

    def close(self) -> None:
        self._db.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def messages(self, ids: Iterable[int]) -> Iterator[Tuple[int, int, bytes]]:
        """Rows in timestamp order; when that order cannot be read at all (a damaged index), in
        recording (row id) order."""
        ids = sorted(set(ids))
        if not ids:
            return
        where = f'WHERE topic_id IN ({",".join("?" * len(ids))})'
        delivered = 0
        for order in ('timestamp', 'id'):
            try:
                for row in self._db.execute(f'SELECT timestamp, topic_id, data FROM messages {where} ORDER BY {order}',
                                            ids):
                    yield row
                    delivered += 1
                break
            except sqlite3.DatabaseError as exc:
                if delivered or order == 'id':
                    raise _Damage(f'{self.damage + "; " if self.damage else ""}sqlite: {exc}') from exc
        if self.damage:
            raise _Damage(self.damage)


# --------------------------------------------------------------------------- recovery

class _Recovery:
    """The storage files of a bag read record by record (:class:`_McapFile`, :class:`_Sqlite3File`):
    for bags rosbags cannot read (damaged, or a directory without ``metadata.yaml``).

    Attributes:
        storage: 'mcap' or 'sqlite3'.
        topics: topic name -> :class:`Topic` (counts from ``metadata.yaml``, None without one).

    Raises:
        BagError: not a rosbag2 bag, an unsupported storage or compression.
        BagDamaged: the bag is damaged so early that nothing can be read.
    """

    def __init__(self, path: Path):
        self.path = path
        self._expected: Dict[str, int] = {}
        self._compressed_messages = False
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._files: list = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        path = self.path
        if path.is_file():
            files = [path]
        elif (path / 'metadata.yaml').is_file():
            files = self._metadata(path / 'metadata.yaml')
        else:
            files = sorted(p for p in path.iterdir() if p.suffix in ('.mcap', '.db3'))
            if not files:
                raise BagError(f'{path} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 file')
        suffixes = {p.suffix for p in files}
        if len(suffixes) != 1 or suffixes.pop() not in ('.mcap', '.db3'):
            raise BagError(f'{path}: unsupported storage files {[p.name for p in files]} (expected .mcap or .db3)')
        self.storage = 'mcap' if files[0].suffix == '.mcap' else 'sqlite3'
        opener = _McapFile if self.storage == 'mcap' else _Sqlite3File
        for f in files:
            self._files.append(opener(f))
        self.topics = self._collect_topics()

    def _metadata(self, meta_path: Path) -> List[Path]:
        """Storage files listed in ``metadata.yaml`` (decompressed when the bag is file-compressed)."""
        try:
            info = yaml.safe_load(meta_path.read_text())['rosbag2_bagfile_information']
            storage = info['storage_identifier']
            names = [Path(p).name for p in info['relative_file_paths']]
            mode = (info.get('compression_mode') or '').lower()
            self._expected = {t['topic_metadata']['name']: int(t['message_count'])
                              for t in info.get('topics_with_message_count') or []}
        except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise BagError(f'{meta_path}: not a valid rosbag2 metadata file ({type(exc).__name__}: {exc})') from exc
        if storage not in STORAGES:
            raise BagError(f'{meta_path}: unsupported storage {storage!r} (expected one of {tuple(STORAGES)})')
        if mode not in ('', 'none', 'file', 'message'):
            raise BagError(f'{meta_path}: unsupported compression mode {mode!r}')
        if mode and mode != 'none' and info.get('compression_format') != 'zstd':
            raise BagError(f'{meta_path}: unsupported compression format {info.get("compression_format")!r}')
        files = [meta_path.parent / n for n in names]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise BagError(f'{meta_path.parent}: storage files listed in metadata.yaml are missing: {missing}')
        self._compressed_messages = mode == 'message'
        if mode == 'file':
            files = [self._decompress_file(f) for f in files]
        return files

    def _decompress_file(self, path: Path) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix='seem_ros_bag_')
        out = Path(self._tmp.name) / path.name.removesuffix('.zstd')
        try:
            with zstd.open(path, 'rb') as src, open(out, 'wb') as dst:
                shutil.copyfileobj(src, dst)
        except Exception as exc:  # noqa: BLE001 - a damaged compressed file: keep what was decompressed
            if not out.exists() or not out.stat().st_size:
                raise BagDamaged(f'{path}: cannot decompress: {exc}') from exc
        return out

    def _collect_topics(self) -> Dict[str, Topic]:
        """Topics of every storage file, keyed by name; counts from metadata.yaml or the file."""
        topics: Dict[str, Topic] = {}
        for f in self._files:
            for topic in self._file_topics(f).values():
                have = topics.get(topic.name)
                if have is not None and have.msgtype != topic.msgtype:
                    raise BagError(f'{self.path}: topic {topic.name} has two types, {have.msgtype} and {topic.msgtype}')
                if have is None or (not have.definition and topic.definition):
                    topics[topic.name] = topic
        return {name: Topic(t.name, t.msgtype, t.definition, t.definition_format, t.serialization,
                            self._expected.get(name)) for name, t in sorted(topics.items())}

    @staticmethod
    def _file_topics(f) -> Dict[int, Topic]:
        """Storage id -> :class:`Topic` (MCAP: channel id; sqlite3: topic id)."""
        if isinstance(f, _Sqlite3File):
            return f.topics
        out = {}
        for cid, (name, schema, encoding) in f.channels.items():
            sname, sformat, sdata = f.schemas.get(schema, ('', '', ''))
            out[cid] = Topic(name, sname, sdata, sformat if sdata else '', encoding)
        return out

    def messages(self, wanted: Set[str]) -> Iterator[BagMessage]:
        """Messages on the topics ``wanted`` in log-time order (split files in sequence); raises
        :class:`_Damage` naming the damaged file after every message before the damage."""
        for f in self._files:
            ids = {sid: t for sid, t in self._file_topics(f).items() if t.name in wanted}
            try:
                for t, sid, data in f.messages(ids):
                    yield BagMessage(ids[sid].name, ids[sid].msgtype, t,
                                     zstd.decompress(data) if self._compressed_messages else data)
            except _Damage as exc:
                raise _Damage(f'{f.path} is damaged: {exc}') from None

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --------------------------------------------------------------------------- bag

_DEFINITION_FORMATS = {MessageDefinitionFormat.MSG: 'ros2msg', MessageDefinitionFormat.IDL: 'ros2idl'}


class BagReader:
    """A rosbag2 bag for reading (context manager).

    Args:
        path: a rosbag2 directory, or one ``.mcap`` / ``.db3`` file.

    Attributes:
        storage: 'mcap' or 'sqlite3'.
        topics: topic name -> :class:`Topic`.
        typestore: rosbags typestore with the ROS 2 Jazzy types, this package's messages, and the
            bag's embedded definitions of every other type.

    Raises:
        BagError: no such path, not a rosbag2 bag, an unsupported storage or compression.
        BagDamaged: the bag is damaged so early that nothing can be read.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f'{self.path}: no such bag')
        self._bag: Optional[Reader] = None
        self._recovery: Optional[_Recovery] = None
        try:
            bag = Reader(self.path)
            bag.open()
            self._bag = bag
        except Exception:  # noqa: BLE001 - whatever rosbags cannot open, the recovery reader reads or names
            self._recovery = _Recovery(self.path)
        try:
            if self._bag is None:
                self.storage, self.topics = self._recovery.storage, self._recovery.topics
            else:
                self.storage, self.topics = self._rosbags_topics(self._bag)
            self._register_types()
        except BaseException:
            self.close()
            raise

    def _rosbags_topics(self, bag: Reader) -> Tuple[str, Dict[str, Topic]]:
        """Storage and topics of a bag rosbags opened."""
        plugin = bag.storage.storages[0] if isinstance(bag.storage, DirectoryReader) else bag.storage
        topics = {}
        for name, info in sorted(bag.topics.items()):
            if info.msgtype is None:
                raise BagError(f'{self.path}: topic {name} has two types, '
                               f'{" and ".join(sorted({c.msgtype for c in info.connections}))}')
            topics[name] = Topic(name, info.msgtype, info.msgdef.data, _DEFINITION_FORMATS.get(info.msgdef.format, ''),
                                 cast(ConnectionExtRosbag2, info.connections[0].ext).serialization_format,
                                 info.msgcount)
        return 'mcap' if isinstance(plugin, McapReader) else 'sqlite3', topics

    def _register_types(self) -> None:
        self.typestore = package_typestore()
        self._definition_errors: Dict[str, str] = {}
        for topic in self.topics.values():
            if not topic.definition:
                continue
            try:
                if topic.definition_format == 'ros2idl':
                    types = get_types_from_idl(topic.definition)
                else:
                    types = get_types_from_msg(topic.definition, topic.msgtype)
                self.typestore.register(types)
            except TypesysError as exc:
                self._definition_errors[topic.name] = (
                    f'the bag\'s definition of {topic.msgtype} differs from the one installed here ({exc})')
            except Exception as exc:  # noqa: BLE001 - the parser raises several types
                self._definition_errors[topic.name] = (
                    f'the bag\'s definition of {topic.msgtype} cannot be parsed: {type(exc).__name__}: {exc}')

    def require(self, name: str, msgtypes: Sequence[str]) -> Topic:
        """The topic ``name``, checked: present, of one of ``msgtypes``, CDR, with a definition that
        matches the installed one. Raises :class:`BagError` naming the problem."""
        topic = self.topics.get(name)
        if topic is None:
            listing = ', '.join(f'{t.name} ({t.msgtype})' for t in self.topics.values()) or 'none'
            raise BagError(f'{self.path} has no topic {name}; its topics: {listing}')
        if topic.msgtype not in msgtypes:
            raise BagError(f'{self.path}: topic {name} has type {topic.msgtype}; expected {" or ".join(msgtypes)}')
        if topic.serialization != 'cdr':
            raise BagError(f'{self.path}: topic {name} is serialized as {topic.serialization!r}, not cdr')
        if name in self._definition_errors:
            raise BagError(f'{self.path}: topic {name}: {self._definition_errors[name]}')
        return topic

    def _stream(self, wanted: Set[str]) -> Iterator[BagMessage]:
        """Messages on ``wanted`` through rosbags; when rosbags fails (damage), the recovery reader
        continues after the messages already delivered, up to the damage (:class:`_Damage`)."""
        if self._bag is None:
            yield from self._recovered().messages(wanted)
            return
        connections = [c for c in self._bag.connections if c.topic in wanted]
        delivered = 0
        try:
            for conn, t, data in self._bag.messages(connections) if connections else ():
                yield BagMessage(conn.topic, conn.msgtype, t, data)
                delivered += 1
        except Exception:  # noqa: BLE001 - rosbags stops at damage with various errors
            yield from itertools.islice(self._recovered().messages(wanted), delivered, None)

    def _recovered(self) -> _Recovery:
        """The recovery reader (opened at the first damage rosbags stops at, unless it is open)."""
        if self._recovery is None:
            self._recovery = _Recovery(self.path)
        return self._recovery

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        """Messages on ``topics`` in log-time order (ties in recording order; split files in sequence).

        Raises:
            BagDamaged: after every message before the damage was delivered; also when the storage
                holds fewer messages than the bag's metadata lists.
        """
        wanted = set(topics)
        delivered, last = 0, None
        read: Counter = Counter()
        try:
            for message in self._stream(wanted):
                yield message
                delivered, last = delivered + 1, message.log_time_ns
                read[message.topic] += 1
        except _Damage as exc:
            at = f' (last good message at {last * 1e-9:.3f} s)' if last is not None else ''
            raise BagDamaged(f'{exc}; {delivered} messages were read before the damage{at}', delivered, last) from None
        short = {name: (read[name], self.topics[name].count) for name in sorted(wanted)
                 if name in self.topics and read[name] < (self.topics[name].count or 0)}
        if short:
            listing = ', '.join(f'{name} {got} of {n}' for name, (got, n) in short.items())
            raise BagDamaged(f'{self.path} ends early: metadata.yaml lists more messages than the storage holds '
                             f'({listing})', delivered, last)

    def close(self) -> None:
        if self._bag is not None:
            self._bag.close()
            self._bag = None
        if self._recovery is not None:
            self._recovery.close()
            self._recovery = None

    def __enter__(self) -> 'BagReader':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _jazzy(metadata: str) -> str:
    """The YAML bag information that rosbags embeds in a storage file, with rosbag2's ``ros_distro``."""
    return yaml.safe_dump({**yaml.safe_load(metadata), 'ros_distro': ROS_DISTRO}, sort_keys=False)


class _McapStorage(McapWriter):
    """rosbags' MCAP storage, its channels carrying rosbag2's metadata: ``offered_qos_profiles`` and
    ``topic_type_hash``."""

    def add_connection(self, connection, offered_qos_profiles: str) -> None:
        metadata = io.BytesIO()
        for key, value in (('offered_qos_profiles', offered_qos_profiles), ('topic_type_hash', connection.digest)):
            write_string(metadata, key)
            write_string(metadata, value)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     connection.ext.serialization_format, metadata.getvalue()))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, _jazzy(metadata))


class _Sqlite3Storage(Sqlite3Writer):
    """rosbags' sqlite3 storage, its schema table and metadata naming Jazzy."""

    def close(self, version: int, metadata: str) -> None:
        self.cursor.execute('UPDATE schema SET ros_distro = ?', (ROS_DISTRO,))
        super().close(version, _jazzy(metadata))


class _Writer(Writer):
    """rosbags' ``Writer`` with :class:`_McapStorage` and :class:`_Sqlite3Storage`, and
    ``ros_distro: jazzy`` in metadata.yaml."""

    STORAGE_PLUGINS = {StoragePlugin.MCAP: _McapStorage, StoragePlugin.SQLITE3: _Sqlite3Storage}

    def close(self) -> None:
        super().close()
        meta = yaml.safe_load(self.metapath.read_text())
        meta['rosbag2_bagfile_information']['ros_distro'] = ROS_DISTRO
        self.metapath.write_text(yaml.safe_dump(meta, sort_keys=False))


class BagWriter:
    """A new rosbag2 bag receiving raw CDR messages; thread-safe; a context manager.

    Args:
        path: bag directory to create.
        storage: 'mcap' or 'sqlite3'.
        overwrite: replace an existing rosbag2 directory at ``path``.
        qos: topic -> the QoS profiles its publishers offer (rosbags ``Qos``), asked at the topic's
            first message and recorded as its ``offered_qos_profiles``; also settable as
            :attr:`qos` before then. None: no profiles (players fall back to their defaults).

    Raises:
        BagError: ``path`` exists (and may not or cannot be replaced), or an unknown storage.
    """

    def __init__(self, path, storage: str = 'mcap', overwrite: bool = False,
                 qos: Optional[Callable[[str], Sequence[Qos]]] = None):
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f'unknown storage {storage!r}; expected one of {tuple(STORAGES)}')
        check_output(self.path, overwrite)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.storage = storage
        self.counts: Counter = Counter()
        self.qos = qos
        self._store = package_typestore()
        self._lock = threading.Lock()
        self._connections: dict = {}
        self._writer: Optional[_Writer] = _Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()

    def write(self, topic: str, msgtype: str, log_time_ns: int, data: bytes) -> None:
        with self._lock:
            if self._writer is None:
                raise BagError(f'{self.path}: the output bag is closed')
            conn = self._connections.get(topic)
            if conn is None:
                conn = self._connections[topic] = self._writer.add_connection(
                    topic, msgtype, typestore=self._store, offered_qos_profiles=self.qos(topic) if self.qos else ())
            self._writer.write(conn, int(log_time_ns), data)
            self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_output(path: Path, overwrite: bool) -> None:
    """Raise :class:`BagError` unless a bag can be written at ``path`` (absent, or an existing rosbag2
    directory and ``overwrite``)."""
    if path.exists():
        if not overwrite:
            raise BagError(f'{path} exists (pass --overwrite to replace it)')
        if not (path / 'metadata.yaml').is_file():
            raise BagError(f'{path} exists and is not a rosbag2 directory; not replacing it')


def cdr_stamp_ns(data: bytes) -> int:
    """Header stamp in nanoseconds of a CDR message whose first field is a ``std_msgs/Header``."""
    little = data[1] & 1
    sec, nanosec = struct.unpack_from('<iI' if little else '>iI', data, 4)
    return sec * 1_000_000_000 + nanosec


__all__ = ['BagDamaged', 'BagError', 'BagMessage', 'BagReader', 'BagWriter', 'Topic', 'cdr_stamp_ns',
           'check_output']
