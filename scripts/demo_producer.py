"""Publish realistic demo events of every type the gateway knows, a few per second.

    python scripts/demo_producer.py --brokers 127.0.0.1:9092 [--rate 3] [--count N] [--create-topics]

Each event type goes to the topic its service would use; the value is the gateway's
event format {id, type, source, timestamp, data}.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
import uuid
from datetime import datetime, timezone

BOOTSTRAP_TIMEOUT_MS = 30_000      # how long a Kafka that does not answer is waited for

# event type -> (topic, source)
CATALOGUE = {
    "blog.post.created": ("blog.posts", "blog-service"),
    "blog.post.updated": ("blog.posts", "blog-service"),
    "blog.post.deleted": ("blog.posts", "blog-service"),
    "blog.comment.created": ("blog.comments", "blog-service"),
    "blog.category.created": ("blog.posts", "blog-service"),
    "blog.tag.created": ("blog.posts", "blog-service"),
    "blog.media.uploaded": ("blog.posts", "blog-service"),
    "twitchbot.stream.started": ("twitchbot.streams", "twitchbot-service"),
    "twitchbot.stream.ended": ("twitchbot.streams", "twitchbot-service"),
    "twitchbot.message.created": ("twitchbot.messages", "twitchbot-service"),
    "twitchbot.viewer.joined": ("twitchbot.messages", "twitchbot-service"),
    "twitchbot.clip.created": ("twitchbot.messages", "twitchbot-service"),
    "twitchbot.command.executed": ("twitchbot.messages", "twitchbot-service"),
    "link.created": ("link.links", "link-service"),
    "link.deleted": ("link.links", "link-service"),
    "link.clicked": ("link.clicks", "link-service"),
}
TOPICS = sorted({topic for topic, _ in CATALOGUE.values()})

_WORDS = "kafka streams actors gevent python browsers events replay latency fan-out".split()
_USERS = ["ada", "grace", "linus", "margaret", "ken", "barbara"]


def _data(event_type: str, n: int) -> dict:
    kind = event_type.split(".")[1]
    title = " ".join(random.sample(_WORDS, 3)).title()
    samples = {
        "post": {"post_id": str(n), "title": title, "author": random.choice(_USERS)},
        "comment": {"comment_id": str(n), "post_id": str(n // 3), "text": f"Nice post about {title}"},
        "category": {"category_id": str(n), "name": random.choice(_WORDS)},
        "tag": {"tag_id": str(n), "name": random.choice(_WORDS)},
        "media": {"media_id": str(n), "filename": f"image-{n}.png", "bytes": random.randint(1e4, 1e6)},
        "stream": {"channel": "toxictoast", "title": title, "viewers": random.randint(0, 500)},
        "message": {"channel": "toxictoast", "user": random.choice(_USERS), "text": title},
        "viewer": {"channel": "toxictoast", "user": random.choice(_USERS)},
        "clip": {"clip_id": uuid.uuid4().hex[:8], "title": title},
        "command": {"command": "!" + random.choice(_WORDS), "user": random.choice(_USERS)},
        "created": {"short": uuid.uuid4().hex[:6], "url": f"https://example.com/{n}"},
        "deleted": {"short": uuid.uuid4().hex[:6]},
        "clicked": {"short": uuid.uuid4().hex[:6], "referrer": "https://example.org"},
    }
    return samples[kind]


def make_event(event_type: str, n: int) -> dict:
    _, source = CATALOGUE[event_type]
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": source,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": _data(event_type, n),
    }


def create_topics(brokers: str, topics=TOPICS, partitions: int = 3) -> list[str]:
    """Create the topics that do not exist yet; returns those created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=brokers.split(","), client_id="sse-demo-admin",
                             bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS)
    try:
        missing = sorted(set(topics) - set(admin.list_topics()))
        if missing:
            admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
        return missing
    finally:
        admin.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=3.0, help="events per second")
    parser.add_argument("--count", type=int, default=0, help="stop after N events (0: forever)")
    parser.add_argument("--create-topics", action="store_true", help="create missing topics first")
    parser.add_argument("--topics-only", action="store_true", help="create topics, publish nothing")
    args = parser.parse_args(argv)

    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    try:
        if args.create_topics or args.topics_only:
            created = create_topics(args.brokers)
            print(f"demo: topics ready ({', '.join(created) or 'all existed'})", file=sys.stderr)
        if args.topics_only:
            return 0
        producer = KafkaProducer(bootstrap_servers=args.brokers.split(","), linger_ms=5,
                                 bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS)
    except KafkaError as exc:
        print(f"demo: no Kafka answers at {args.brokers} ({exc}): start it, or correct "
              "KAFKA_BROKERS (environment or .env; without it make run starts a Kafka of its "
              "own)", file=sys.stderr)
        return 1
    types = list(CATALOGUE)
    counter = range(args.count) if args.count else itertools.count()
    try:
        for n in counter:
            event_type = types[n % len(types)] if n < len(types) else random.choice(types)
            producer.send(CATALOGUE[event_type][0], json.dumps(make_event(event_type, n)).encode())
            time.sleep(1 / args.rate)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush(timeout=5)
        producer.close(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
