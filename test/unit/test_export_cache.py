"""The export cache's keys and its lock: processes needing the same export take turns, and the
first one's result is reused (the export itself is tested end to end in test_backend_parity_*)."""
import threading
import time

from seem_ros.runtime import export as ex
from seem_ros.runtime import export_cache


def test_concurrent_callers_export_once_and_sizes_share_a_padded_input(tmp_path, monkeypatch):
    checkpoint = tmp_path / 'model.pt'
    checkpoint.write_bytes(b'weights')
    exported = []

    def slow_export(checkpoint, variant, version, size, digest, target):
        exported.append(size)
        time.sleep(0.3)                                  # long enough for the others to queue up
        target.mkdir()
        (target / ex.MANIFEST).write_text('{}')

    monkeypatch.setattr(export_cache, '_export', slow_export)
    results = []

    def call(width, height):
        results.append(export_cache.cached_export(checkpoint, variant='tiny', version='v1', height=height,
                                                  width=width, short_side=120, cache_dir=tmp_path, log=print))

    threads = [threading.Thread(target=call, args=size) for size in [(640, 480)] * 3 + [(320, 240)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert exported == [(128, 160)]                      # 640x480 and 320x240 both run at 160x120 (padded)
    assert len(set(results)) == 1 and results[0].name.startswith('tiny-v1-') and '-128x160-' in results[0].name
    checkpoint.write_bytes(b'other weights')             # another checkpoint is another entry
    call(640, 480)
    assert len(exported) == 2 and results[-1] != results[0]
