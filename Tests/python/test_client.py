"""The socket protocol from Python, through the README's example client.

Run by the Swift test suite (PythonClientTests) against a live daemon: TRACKQ_SOCKET names
its socket. Standard library only.
"""
import json, os, socket, sys, unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
import trackq_client  # noqa: E402

SOCKET = os.environ["TRACKQ_SOCKET"]


class ClientTest(unittest.TestCase):
    def test_one_event_is_acknowledged(self):
        [answer] = trackq_client.send([{"event_name": "py_one", "user_id": "u1", "properties": {"n": 1}}], SOCKET)
        self.assertEqual(answer["ok"], True)
        self.assertEqual(answer["accepted"], 1)

    def test_a_batch_is_one_answer(self):
        batch = [{"event": "py_batch", "user_id": "u%d" % i} for i in range(10)]
        [answer] = trackq_client.send([batch], SOCKET)
        self.assertEqual(answer["accepted"], 10)
        self.assertEqual(answer["last_id"] - answer["first_id"], 9)

    def test_refusals_name_the_field(self):
        answers = trackq_client.send([
            {"event_name": "py_bad"},
            {"event_name": "", "user_id": "u"},
            {"event_name": "py_ok", "user_id": "u", "timestamp": "2026-11-27T05:00:00.123+01:00"},
        ], SOCKET)
        self.assertEqual([a["ok"] for a in answers], [False, False, True])
        self.assertEqual(answers[0]["error"], "invalid_event")
        self.assertIn("user_id", answers[0]["message"])
        self.assertIn("event_name", answers[1]["message"])

    def test_pipelined_thousand(self):
        answers = trackq_client.send([{"event_name": "py_many", "user_id": "u", "i": i} for i in range(1000)], SOCKET)
        self.assertTrue(all(a["ok"] for a in answers))
        ids = [a["first_id"] for a in answers]
        self.assertEqual(ids, sorted(ids))

    def test_garbage_bytes_get_invalid_json_and_the_connection_lives(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(SOCKET)
            s.sendall(b"\xff\xfe\x00garbage\n" + json.dumps({"event_name": "py_after", "user_id": "u"}).encode() + b"\n")
            reader = s.makefile("rb")
            first, second = json.loads(reader.readline()), json.loads(reader.readline())
        self.assertEqual(first["error"], "invalid_json")
        self.assertEqual(second["ok"], True)


if __name__ == "__main__":
    unittest.main()
