#!/usr/bin/env python3
"""Writes the seed inputs of broker_fuzz into fuzz/corpus-broker/.

Each seed is a program in the fuzzer's input format (see `program` and `one_operation` in
broker_fuzz.cpp), written here readably, after the scenarios of the unit tests: a callback
that owns its subscription, dead-lettering with TTLs and hooked bodies, length limits,
manual acks kept and settled later, throwing callbacks and on_cancel, topic and headers
bindings, callbacks that publish and dispatch. Run it after changing the format:
python3 fuzz/make_broker_seeds.py
"""
import pathlib

# Must match the alphabets of broker_fuzz.cpp.
EXCHANGES = ["x0", "x1", "x2", "x3", "", "amq.direct", "amq.topic", "amq.fanout", "amq.headers", "missing"]
TYPES = ["direct", "fanout", "topic", "headers", "bogus"]
QUEUES = ["q0", "q1", "q2", "q3", "q4", "missing", "amq.q"]
KEYS = ["", "a", "b", "a.b", "a.b.c", "#", "*", "a.*", "*.b", "a.#", "#.b", "q0", "q1", "q2", "q3", "q4"]
HEADER_NAMES = ["h", "k", "x-match", "x-h"]
HEADER_VALUES = ["v", "w", "any", "all", "bad"]
BEHAVIOURS = ["nothing", "ack", "nack_requeue", "nack_drop", "reject", "throws", "publish", "release_self",
              "delete_queue", "keep", "ack_multiple", "subscribe_other", "nested_dispatch"]
OVERFLOW = ["drop-head", "reject-publish", "reject-publish-dlx", "bogus"]
EXPIRATIONS = ["0", "10", "25", "1000", "-1", "soon"]


def table(*fields):
    """(name, value) pairs: a string value from HEADER_VALUES, or an int 0..2."""
    out = [len(fields)]
    for name, value in fields:
        out.append(HEADER_NAMES.index(name))
        if isinstance(value, str):
            out += [1, HEADER_VALUES.index(value)]
        else:
            out += [0, value]
    return out


def no_table():
    return [0]


def declare_exchange(name, kind, auto_delete=False, internal=False, alternate=None):
    bits = (1 if auto_delete else 0) | (2 if internal else 0) | (4 if alternate is not None else 0)
    out = [0, EXCHANGES.index(name), TYPES.index(kind), bits]
    if alternate is not None:
        out.append(EXCHANGES.index(alternate))
    return out


def delete_exchange(name, if_unused=False):
    return [1, EXCHANGES.index(name), int(if_unused)]


def declare_queue(name, server_named=False, auto_delete=False, ttl=None, max_length=None, overflow=None, dlx=None,
                  dl_key=None, max_priority=None, single_active=None, expires=None):
    bits = 0
    payload = []
    if ttl is not None:  # 10 * n - 5 ms
        bits |= 0x01
        payload.append((ttl + 5) // 10)
    if max_length is not None:
        bits |= 0x02
        payload.append(max_length)
    if overflow is not None:
        bits |= 0x04
        payload.append(OVERFLOW.index(overflow))
    if dlx is not None:
        bits |= 0x08
        payload.append(EXCHANGES.index(dlx))
    if dl_key is not None:
        bits |= 0x10
        payload.append(KEYS.index(dl_key))
    if max_priority is not None:
        bits |= 0x20
        payload.append(max_priority)
    if single_active is not None:
        bits |= 0x40
        payload.append(int(single_active))
    if expires is not None:  # 20 * n ms
        bits |= 0x80
        payload += [1, expires // 20]
    return [2, QUEUES.index(name), 0 if server_named else 1, 0 if auto_delete else 1, bits] + payload


def delete_queue(name, if_unused=False, if_empty=False):
    return [4, QUEUES.index(name), int(if_unused), int(if_empty)]


def purge(name):
    return [5, QUEUES.index(name)]


def bind(queue, exchange, key, args=None):
    return [6, QUEUES.index(queue), EXCHANGES.index(exchange), KEYS.index(key)] + ([1] + args if args else [0])


def unbind(queue, exchange, key, args=None):
    return [8, QUEUES.index(queue), EXCHANGES.index(exchange), KEYS.index(key)] + ([1] + args if args else [0])


def bind_exchange(destination, source, key, remove=False):
    return [9, EXCHANGES.index(destination), EXCHANGES.index(source), KEYS.index(key), int(remove)]


def message(size=3, priority=None, expiration=None, headers=None, message_id=None, hook=None):
    bits = 0
    payload = []
    if priority is not None:
        bits |= 0x01
        payload.append(priority)
    if expiration is not None:
        bits |= 0x02
        payload.append(EXPIRATIONS.index(expiration))
    if headers is not None:
        bits |= 0x04
        payload += headers
    if message_id is not None:
        bits |= 0x08
        payload.append(message_id)
    if hook is not None:
        bits |= 0x10
        payload.append(QUEUES.index(hook))
    return [size, bits] + payload


def publish(exchange, key, msg=None, mandatory=False):
    return [10, EXCHANGES.index(exchange), KEYS.index(key)] + (msg or message()) + [int(mandatory)]


def make_publisher(exchange):
    return [13, 1, EXCHANGES.index(exchange)]


def publish_through(index, key, msg=None):
    return [13, 0, index, KEYS.index(key)] + (msg or message())


def publish_many(exchange, key, msgs, mandatory=False, through=None):
    """A batch of len(msgs) (1 to 4) bodies; each msg is read whole, only its body is kept."""
    head = [24, 1, through] if through is not None else [24, 0, EXCHANGES.index(exchange)]
    out = head + [KEYS.index(key), len(msgs) - 1]
    for msg in msgs:
        out += msg
    return out + [int(mandatory)]


def subscribe(queue, does="nothing", manual=False, prefetch=0, exclusive=False, priority=0, tagged=False,
              owns_itself=False, hooked=False, on_cancel="none", target_key="q0", only_the_callback=True,
              synchronous=False):
    bits = (int(manual) | (prefetch << 1) | (8 if exclusive else 0) | (priority << 4) | (32 if tagged else 0) |
            (64 if owns_itself else 0) | (128 if hooked else 0))
    more_bits = ["none", "throws", "redeclares"].index(on_cancel) | (128 if synchronous else 0)
    out = [14, QUEUES.index(queue), bits, BEHAVIOURS.index(does), more_bits, KEYS.index(target_key)]
    if owns_itself:
        out.append(int(only_the_callback))
    return out


def release(index, forget=False):
    return [16, index, int(forget)]


def get(queue, manual=False):
    return [17, QUEUES.index(queue), int(manual)]


def settle(index, how, forget=False):
    return [18, index, ["ack", "ack_multiple", "nack_multiple_requeue", "nack_drop", "reject_requeue"].index(how),
            int(forget)]


def dispatch(n=8):
    return [19, n - 1]


def advance(ms):
    return [20, ms]


def handlers(which):
    return [21, ["error", "no_error", "return", "no_return"].index(which)]


def destroy_broker(cache=0):
    return [22, cache]


def observe():
    return [23]


def seed(cache, *ops):
    out = [cache]  # the first broker's routing cache size byte
    for op in ops:
        out += op
    return bytes(out)


SEEDS = {
    # The worker pattern: a callback owns its subscription; its queue is deleted, then the
    # broker destroyed (the use after free and the deadlock of issue 9, item 1).
    "owns-itself-delete-queue": seed(
        0, declare_queue("q0"), subscribe("q0", owns_itself=True), publish("", "q0"), dispatch(),
        delete_queue("q0"), declare_queue("q0"), subscribe("q0", "ack", manual=True), publish("", "q0"), dispatch()),
    "owns-itself-destroy-broker": seed(
        1, declare_queue("q0"), declare_queue("q1"), subscribe("q0", owns_itself=True, hooked=True),
        subscribe("q1", "release_self", owns_itself=True), publish("", "q0"), publish("", "q1"), dispatch(1),
        destroy_broker(), declare_queue("q0"), observe()),
    # TTLs and dead-lettering with hooked bodies: originals go once their copy is routed.
    "ttl-dead-letter-hooked": seed(
        0, declare_exchange("x0", "fanout"), declare_queue("q1"), bind("q1", "x0", ""),
        declare_queue("q0", ttl=25, dlx="x0"), publish("", "q0", message(hook="q2")),
        publish("", "q0", message(expiration="10", hook="q0")), advance(30), get("q1", manual=True),
        settle(0, "nack_drop"), purge("q1"), observe()),
    # Length limits: drop-head, reject-publish, reject-publish-dlx, with confirms.
    "length-limits": seed(
        2, declare_exchange("x1", "direct"), declare_queue("q2"), bind("q2", "x1", "a"),
        declare_queue("q0", max_length=1, overflow="reject-publish-dlx", dlx="x1", dl_key="a"),
        declare_queue("q1", max_length=1), publish("", "q0", message(hook="q1")), publish("", "q0"),
        publish("", "q1", message(hook="q1")), publish("", "q1"), declare_queue("q3", max_length=0, overflow="reject-publish"),
        publish("", "q3", mandatory=True), observe()),
    # Manual acks: kept deliveries settled later, with multiple, twice, after a requeue.
    "manual-acks-kept": seed(
        0, declare_queue("q0"), publish("", "q0"), publish("", "q0"), publish("", "q0", message(hook="q0")),
        subscribe("q0", "keep", manual=True, prefetch=2), dispatch(), settle(1, "ack_multiple"),
        settle(1, "ack_multiple"), dispatch(), settle(0, "nack_multiple_requeue"), dispatch(),
        release(0), get("q0", manual=True), settle(0, "reject_requeue"), get("q0"), observe()),
    # Throwing callbacks and on_cancel, with and without an error handler.
    "throwing-callbacks": seed(
        0, declare_queue("q0", dlx=""), subscribe("q0", "throws", manual=True, on_cancel="throws"),
        subscribe("q0", "nothing", on_cancel="redeclares", tagged=True), publish("", "q0"), dispatch(),
        handlers("error"), publish("", "q0"), publish("", "q0"), dispatch(), delete_queue("q0"), handlers("no_error"),
        declare_queue("q0"), subscribe("q0", on_cancel="throws"), delete_queue("q0")),
    # Topic and headers bindings, exchange-to-exchange bindings, alternate exchanges.
    "bindings": seed(
        3, declare_exchange("x0", "topic", alternate="x1"), declare_exchange("x1", "fanout"),
        declare_exchange("x2", "headers", auto_delete=True), declare_queue("q0"), declare_queue("q1"),
        declare_queue("q2"), bind("q0", "x0", "a.*"), bind("q0", "x0", "#"), bind("q1", "x1", ""),
        bind("q2", "x2", "", table(("x-match", "any"), ("h", "v"))), bind("q2", "x2", "", table(("x-match", "bad"))),
        bind_exchange("x2", "x0", "a.#"), publish("x0", "a.b", message(headers=table(("h", "v")))),
        publish("x0", "b", mandatory=True), unbind("q0", "x0", "#"), unbind("q2", "x2", "", table(("x-match", "any"), ("h", "v"))),
        bind_exchange("x2", "x0", "a.#", remove=True), make_publisher("x0"), publish_through(0, "a.b"),
        delete_exchange("x0"), publish_through(0, "a.b"), observe()),
    # Callbacks that publish, subscribe, dispatch and delete their own queue.
    "reentrant-callbacks": seed(
        0, declare_queue("q0"), declare_queue("q1"), subscribe("q0", "publish", target_key="q1"),
        subscribe("q1", "nested_dispatch"), subscribe("q1", "subscribe_other"), publish("", "q0"), publish("", "q1"),
        dispatch(), declare_queue("q2", auto_delete=True), subscribe("q2", "delete_queue"), publish("", "q2"),
        dispatch(), release(0), release(1, forget=True), observe()),
    # Synchronous consumers: a cycle of publishes between two of them (which ends inside
    # the publish), one that throws, one with manual acks kept.
    "synchronous-receivers": seed(
        0, declare_queue("q0"), declare_queue("q1"), subscribe("q0", "publish", target_key="q1", synchronous=True),
        subscribe("q1", "publish", target_key="q0", synchronous=True), publish("", "q0"), dispatch(),
        declare_queue("q2"), subscribe("q2", "throws", synchronous=True), publish("", "q2"),
        subscribe("q2", "keep", manual=True, synchronous=True), publish("", "q2"), publish("", "q2"), dispatch(),
        release(2), observe()),
    # Batches: to queues with a length limit and a synchronous receiver that publishes,
    # mandatory ones that return, through a publisher, with hooked bodies.
    "batches": seed(
        0, declare_exchange("x0", "direct"), declare_queue("q0", max_length=2, dlx=""), declare_queue("q1"),
        bind("q0", "x0", "a"), bind("q1", "x0", "a"), subscribe("q1", "publish", target_key="q0", synchronous=True),
        publish_many("x0", "a", [message(), message(hook="q1"), message()]),
        publish_many("x0", "b", [message(), message()], mandatory=True), make_publisher("x0"),
        publish_many("", "a", [message(hook="q0"), message(), message(), message()], through=0), dispatch(),
        get("q0"), observe()),
    # Single active consumer, priorities, exclusive consumers, x-expires.
    "consumers": seed(
        0, declare_queue("q0", single_active=True), subscribe("q0", "ack", manual=True),
        subscribe("q0", "ack", manual=True, priority=1), subscribe("q0", exclusive=True), publish("", "q0"),
        dispatch(), release(0), publish("", "q0"), dispatch(), declare_queue("q1", expires=40), advance(39),
        advance(39), declare_queue("q3", max_priority=3), publish("", "q3", message(priority=5)),
        publish("", "q3", message(priority=1)), get("q3"), observe()),
}


def main():
    out = pathlib.Path(__file__).resolve().parent / "corpus-broker"
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for name, data in SEEDS.items():
        (out / name).write_bytes(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")


if __name__ == "__main__":
    main()
