from actors.outbox import Outbox


def test_offers_are_bounded_by_events_not_chunks():
    box = Outbox(3)
    assert box.offer(b"ab", 2, "2")
    assert not box.offer(b"cd", 2, "4")
    assert box.dropped == 2 and box.queued == 2
    assert box.offer(b"e", 1, "5")
    assert box.take(0) == (b"abe", 3, "5")
    assert box.queued == 0


def test_heartbeats_do_not_count_and_close_drains_first():
    box = Outbox(1)
    box.offer(b"x", 1, "1")
    box.poke(b": hb\n\n")
    box.close("bye", b": closing\n\n")
    assert not box.finished
    assert box.take(0) == (b"x: hb\n\n: closing\n\n", 1, "1")
    assert box.finished and box.closed_reason == "bye"
    assert not box.offer(b"y", 1, "2")


def test_written_tracks_sent_and_last_id():
    box = Outbox(5)
    box.written(3, "c")
    box.written(0, None)
    assert (box.sent, box.last_id) == (3, "c")
