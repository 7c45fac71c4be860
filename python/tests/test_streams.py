"""Streams on a real worker: chunks, the ACK window, CANCEL, errors."""

from __future__ import annotations

import hashlib
import json
from typing import List

from harness import LeakCheckedCase, WorkerProcess, read_text
from snakepit_worker import _frames
from snakepit_worker._frames import Frame

FIXTURES = "fixture_adapters"

# How long the window test listens for a chunk that must not come. It
# proves an absence, so it can only be a bounded wait; correctness never
# depends on it being long enough, only the strength of the check does.
QUIET = 0.3


class StreamCase(LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        self.finally_log = self.temp_path("finally.log")
        self.worker = self.start(
            env={"SNAKEPIT_SHOWCASE_FINALLY_LOG": self.finally_log})

    def chunks_until_end(self, worker: WorkerProcess, frame_id: int,
                         ack: bool = True) -> List[Frame]:
        """Read CHUNKs of frame_id, ACKing each, up to END or ERROR."""
        frames: List[Frame] = []
        while True:
            frame = worker.recv()
            self.assertEqual(frame.id, frame_id)
            frames.append(frame)
            if frame.kind != _frames.CHUNK:
                return frames
            self.assertEqual(frame.meta, {"seq": len(frames)})
            if ack:
                worker.send(_frames.ACK, frame_id, {"seq": len(frames)})

    def assert_quiet(self, worker: WorkerProcess) -> None:
        with self.assertRaises(TimeoutError):
            frame = worker.recv(timeout=QUIET)
            self.fail(f"unexpected frame {frame}")


class WindowTest(StreamCase):
    def test_window_and_ack(self) -> None:
        window, total = 4, 19
        self.worker.request(1, "batch_inference",
                            {"items": list(range(total))},
                            stream=True, window=window)
        acked = received = 0
        while received < total:
            frame = self.worker.recv()
            self.assertEqual(frame.kind, _frames.CHUNK, frame)
            received += 1
            self.assertEqual(frame.meta["seq"], received)
            self.assertLessEqual(received, acked + window)
            self.assertEqual(json.loads(frame.body)["index"], received - 1)
            if received == acked + window:
                if acked == 0:
                    self.assert_quiet(self.worker)
                acked = received - 1  # leave one unacknowledged
                self.worker.send(_frames.ACK, 1, {"seq": acked})
        end = self.worker.recv()
        self.assertEqual((end.kind, end.meta), (_frames.END,
                                                {"chunks": total}))

    def test_default_window_is_32(self) -> None:
        self.worker.request(1, "infinite_stream", {}, stream=True)
        for seq in range(1, 33):
            self.assertEqual(self.worker.recv().meta, {"seq": seq})
        self.assert_quiet(self.worker)
        self.worker.send(_frames.CANCEL, 1)
        self.assertEqual(self.worker.recv().meta["reason"], "cancelled")

    def test_stale_and_unknown_acks_are_ignored(self) -> None:
        self.worker.request(1, "batch_inference", {"items": [1, 2, 3]},
                            stream=True, window=1)
        self.assertEqual(self.worker.recv().meta, {"seq": 1})
        self.worker.send(_frames.ACK, 77, {"seq": 5})
        self.worker.send(_frames.ACK, 1, {"seq": 0})
        self.worker.send(_frames.ACK, 1, {"seq": "x"})
        self.assert_quiet(self.worker)
        self.worker.send(_frames.ACK, 1, {"seq": 3})
        self.assertEqual(self.worker.recv().meta, {"seq": 2})
        self.assertEqual(self.worker.recv().meta, {"seq": 3})
        self.assertEqual(self.worker.recv().kind, _frames.END)


class CancelTest(StreamCase):
    def test_cancel_while_window_is_full(self) -> None:
        self.worker.request(1, "infinite_stream", {}, stream=True,
                            window=3)
        for seq in (1, 2, 3):
            self.assertEqual(self.worker.recv().meta, {"seq": seq})
        self.assertEqual(read_text(self.finally_log), "")
        self.worker.send(_frames.CANCEL, 1, {"reason": "caller left"})
        frame = self.worker.recv()
        self.assertEqual(frame.kind, _frames.ERROR)
        self.assertEqual(frame.meta["category"], "worker")
        self.assertEqual(frame.meta["reason"], "cancelled")
        # The generator is closed before the ERROR is written.
        self.assertEqual(read_text(self.finally_log), "closed\n")
        self.assertEqual(self.worker.call(2, "ping").kind, _frames.RESULT)

    def test_cancel_a_flowing_stream(self) -> None:
        self.worker.request(1, "infinite_stream", {"delay_ms": 1},
                            stream=True, window=8)
        seq = 0
        while seq < 20:
            frame = self.worker.recv()
            seq += 1
            self.assertEqual(frame.meta, {"seq": seq})
            self.worker.send(_frames.ACK, 1, {"seq": seq})
        self.worker.send(_frames.CANCEL, 1)
        while True:
            frame = self.worker.recv()
            if frame.kind != _frames.CHUNK:
                break
            seq += 1
            self.assertEqual(frame.meta, {"seq": seq})
        self.assertEqual(frame.meta["reason"], "cancelled")
        self.assertEqual(read_text(self.finally_log), "closed\n")

    def test_cancel_after_end_gets_nothing(self) -> None:
        self.worker.request(1, "batch_inference", {"items": [1]},
                            stream=True)
        frames = self.chunks_until_end(self.worker, 1)
        self.assertEqual(frames[-1].kind, _frames.END)
        self.worker.send(_frames.CANCEL, 1)
        self.worker.send(_frames.PING, 0, {"seq": 9})
        self.assertEqual(self.worker.recv().kind, _frames.PONG)


class ShapesTest(StreamCase):
    def test_plain_command_streams_one_chunk(self) -> None:
        self.worker.request(1, "ping", {"message": "x"}, stream=True)
        frames = self.chunks_until_end(self.worker, 1)
        self.assertEqual([f.kind for f in frames],
                         [_frames.CHUNK, _frames.END])
        self.assertEqual(json.loads(frames[0].body)["message"], "x")
        self.assertEqual(frames[1].meta, {"chunks": 1})

    def test_generator_without_stream_is_a_list(self) -> None:
        frame = self.worker.call(1, "batch_inference", {"items": ["a", 2]})
        self.assertEqual(frame.kind, _frames.RESULT)
        got = json.loads(frame.body)
        self.assertEqual([(g["index"], g["item"]) for g in got],
                         [(0, "a"), (1, 2)])
        self.assertEqual(set(got[0]["prediction"]), {"label", "score"})

    def test_error_after_chunks(self) -> None:
        self.worker.request(1, "fail_after", {"n": 3}, stream=True)
        frames = self.chunks_until_end(self.worker, 1)
        self.assertEqual([f.kind for f in frames],
                         [_frames.CHUNK] * 3 + [_frames.ERROR])
        error = frames[-1].meta
        self.assertEqual(error["reason"], "python_exception")
        self.assertEqual(error["message"], "failed after 3 chunks")
        self.assertEqual(error["details"]["type"], "ValueError")

    def test_blob_chunks(self) -> None:
        self.worker.request(1, "stream_blob", {"count": 3, "size": 1000},
                            stream=True, window=2)
        frames = self.chunks_until_end(self.worker, 1)
        self.assertEqual(frames[-1].meta, {"chunks": 3})
        self.assertTrue(all(f.raw and f.body == bytes(1000)
                            for f in frames[:3]))

    def test_raw_chunks(self) -> None:
        self.worker.request(1, "stream_bytes", {"count": 3, "size": 100000},
                            stream=True, window=2)
        frames = self.chunks_until_end(self.worker, 1)
        self.assertEqual(frames[-1].meta, {"chunks": 4})
        blocks = frames[:3]
        self.assertTrue(all(f.raw for f in blocks))
        self.assertTrue(all(len(f.body) == 100000 for f in blocks))
        summary = json.loads(frames[3].body)
        self.assertFalse(frames[3].raw)
        digest = hashlib.sha256(b"".join(f.body for f in blocks))
        self.assertEqual(summary, {"sha256": digest.hexdigest(),
                                   "bytes": 300000})

    def test_generate_report(self) -> None:
        self.worker.request(1, "generate_report",
                            {"sections": 3, "delay_ms": 1}, stream=True)
        frames = self.chunks_until_end(self.worker, 1)
        self.assertEqual(frames[-1].meta, {"chunks": 3})
        sections = [json.loads(f.body)["section"] for f in frames[:3]]
        self.assertEqual(sections, [1, 2, 3])

    def test_async_generator_stream(self) -> None:
        worker = self.start(adapter=f"{FIXTURES}:AsyncAdapter")
        worker.request(1, "countdown", {"n": 2}, stream=True, window=1)
        frames = self.chunks_until_end(worker, 1)
        self.assertEqual([json.loads(f.body) for f in frames[:2]],
                         [{"left": 2}, {"left": 1}])
        self.assertEqual(frames[2].meta, {"chunks": 2})
