#pragma once
// What the differential tests share: AMQP field values as they go on the wire (the AMQP
// kind kept, since RabbitMQ minds it), their conversions to and from rabbitmq-c and
// warren, and a small rabbitmq-c client: one connection, one channel, reopened after a
// channel error.

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

namespace differential {

// ---------------------------------------------------------------------------------------
// Field values.

struct value {
    char kind = 'V';                // AMQP field kind: S t b B s u I i l T f d V A F
    std::string text;               // S
    std::int64_t integer = 0;       // t (0 or 1), T and the integer kinds
    double real = 0;                // f (a float's value, widened) and d
    std::vector<std::string> names; // F: field names, parallel to items
    std::vector<value> items;       // A and F
};

struct field {
    std::string name;
    value v;
};
using table = std::vector<field>;

inline value str(std::string s) {
    value v;
    v.kind = 'S';
    v.text = std::move(s);
    return v;
}
inline value integer(char kind, std::int64_t n) {
    value v;
    v.kind = kind;
    v.integer = n;
    return v;
}
inline value boolean(bool b) { return integer('t', b ? 1 : 0); }
inline value real(char kind, double x) {
    value v;
    v.kind = kind;
    v.real = kind == 'f' ? static_cast<double>(static_cast<float>(x)) : x;
    return v;
}
inline value void_value() { return value{}; }
inline value array(std::vector<value> items) {
    value v;
    v.kind = 'A';
    v.items = std::move(items);
    return v;
}
inline value nested_table(std::vector<std::string> names, std::vector<value> items) {
    value v;
    v.kind = 'F';
    v.names = std::move(names);
    v.items = std::move(items);
    return v;
}

inline bool is_integer_kind(char kind) { return std::string_view("bBsuIilT").find(kind) != std::string_view::npos; }

inline std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + '"';
}

/// A value with its AMQP kind, e.g. I:1 or f:2.5.
inline std::string describe(const value& v) {
    char buf[64];
    switch (v.kind) {
    case 'S': return quote(v.text);
    case 't': return v.integer != 0 ? "true" : "false";
    case 'V': return "void";
    case 'f':
    case 'd': std::snprintf(buf, sizeof buf, "%c:%.17g", v.kind, v.real); return buf;
    case 'A': {
        std::string out = "A[";
        for (std::size_t i = 0; i < v.items.size(); ++i) out += (i ? ", " : "") + describe(v.items[i]);
        return out + "]";
    }
    case 'F': {
        std::string out = "F{";
        for (std::size_t i = 0; i < v.items.size(); ++i) {
            out += (i ? ", " : "") + quote(v.names[i]) + "=" + describe(v.items[i]);
        }
        return out + "}";
    }
    default: return std::string(1, v.kind) + ":" + std::to_string(v.integer);
    }
}

inline std::string describe(const table& t) {
    std::string out = "{";
    for (std::size_t i = 0; i < t.size(); ++i) out += (i ? ", " : "") + quote(t[i].name) + "=" + describe(t[i].v);
    return out + "}";
}

inline warren::field_value to_warren(const value& v) {
    switch (v.kind) {
    case 'S': return warren::field_value(v.text);
    case 't': return warren::field_value(v.integer != 0);
    case 'V': return warren::field_value();
    case 'f':
    case 'd': return warren::field_value(v.real);
    case 'A': {
        warren::field_array a;
        for (const auto& item : v.items) a.push_back(to_warren(item));
        return warren::field_value(std::move(a));
    }
    case 'F': {
        warren::field_table t;
        for (std::size_t i = 0; i < v.items.size(); ++i) t.set(v.names[i], to_warren(v.items[i]));
        return warren::field_value(std::move(t));
    }
    default: return warren::field_value(v.integer);
    }
}

inline warren::field_table to_warren(const table& t) {
    warren::field_table out;
    for (const auto& f : t) out.set(f.name, to_warren(f.v));
    return out;
}

/// warren keeps one integer kind (l) and one float kind (d).
inline value from_warren(const warren::field_value& v) {
    if (const auto* b = v.get_if<bool>()) return boolean(*b);
    if (const auto* i = v.get_if<std::int64_t>()) return integer('l', *i);
    if (const auto* d = v.get_if<double>()) return real('d', *d);
    if (const auto* s = v.get_if<std::string>()) return str(*s);
    if (const auto* a = v.get_if<warren::field_array>()) {
        std::vector<value> items;
        for (const auto& item : *a) items.push_back(from_warren(item));
        return array(std::move(items));
    }
    if (const auto* t = v.get_if<warren::field_table>()) {
        std::vector<std::string> names;
        std::vector<value> items;
        for (const auto& e : *t) {
            names.push_back(e.name);
            items.push_back(from_warren(e.value));
        }
        return nested_table(std::move(names), std::move(items));
    }
    return void_value();
}

inline table from_warren(const warren::field_table& t) {
    table out;
    for (const auto& e : t) out.push_back({e.name, from_warren(e.value)});
    return out;
}

inline std::string text_of(const amqp_bytes_t& b) {
    return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

inline table from_amqp(const amqp_table_t& t);

inline value from_amqp(const amqp_field_value_t& f) {
    switch (f.kind) {
    case AMQP_FIELD_KIND_BOOLEAN: return boolean(f.value.boolean != 0);
    case AMQP_FIELD_KIND_I8: return integer('b', f.value.i8);
    case AMQP_FIELD_KIND_U8: return integer('B', f.value.u8);
    case AMQP_FIELD_KIND_I16: return integer('s', f.value.i16);
    case AMQP_FIELD_KIND_U16: return integer('u', f.value.u16);
    case AMQP_FIELD_KIND_I32: return integer('I', f.value.i32);
    case AMQP_FIELD_KIND_U32: return integer('i', f.value.u32);
    case AMQP_FIELD_KIND_I64: return integer('l', f.value.i64);
    case AMQP_FIELD_KIND_U64: return integer('l', static_cast<std::int64_t>(f.value.u64));
    case AMQP_FIELD_KIND_TIMESTAMP: return integer('T', static_cast<std::int64_t>(f.value.u64));
    case AMQP_FIELD_KIND_F32: return real('f', f.value.f32);
    case AMQP_FIELD_KIND_F64: return real('d', f.value.f64);
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES: return str(text_of(f.value.bytes));
    case AMQP_FIELD_KIND_ARRAY: {
        std::vector<value> items;
        for (int i = 0; i < f.value.array.num_entries; ++i) items.push_back(from_amqp(f.value.array.entries[i]));
        return array(std::move(items));
    }
    case AMQP_FIELD_KIND_TABLE: {
        std::vector<std::string> names;
        std::vector<value> items;
        for (const auto& [name, v] : from_amqp(f.value.table)) {
            names.push_back(name);
            items.push_back(v);
        }
        return nested_table(std::move(names), std::move(items));
    }
    default: return void_value();
    }
}

inline table from_amqp(const amqp_table_t& t) {
    table out;
    for (int i = 0; i < t.num_entries; ++i) out.push_back({text_of(t.entries[i].key), from_amqp(t.entries[i].value)});
    return out;
}

/// Builds rabbitmq-c tables; everything lives until the arena goes, which outlives the call.
class amqp_arena {
public:
    static amqp_bytes_t bytes(const std::string& s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }

    amqp_table_t table_of(const table& t) {
        auto& entries = entries_.emplace_back(t.size());
        for (std::size_t i = 0; i < t.size(); ++i) {
            entries[i].key = bytes(t[i].name);
            entries[i].value = field_of(t[i].v);
        }
        return amqp_table_t{static_cast<int>(entries.size()), entries.data()};
    }

    amqp_field_value_t field_of(const value& v) {
        amqp_field_value_t f{};
        f.kind = static_cast<std::uint8_t>(v.kind);
        switch (v.kind) {
        case 'S': f.value.bytes = bytes(v.text); break;
        case 't': f.value.boolean = v.integer != 0 ? 1 : 0; break;
        case 'b': f.value.i8 = static_cast<std::int8_t>(v.integer); break;
        case 'B': f.value.u8 = static_cast<std::uint8_t>(v.integer); break;
        case 's': f.value.i16 = static_cast<std::int16_t>(v.integer); break;
        case 'u': f.value.u16 = static_cast<std::uint16_t>(v.integer); break;
        case 'I': f.value.i32 = static_cast<std::int32_t>(v.integer); break;
        case 'i': f.value.u32 = static_cast<std::uint32_t>(v.integer); break;
        case 'l': f.value.i64 = v.integer; break;
        case 'T': f.value.u64 = static_cast<std::uint64_t>(v.integer); break;
        case 'f': f.value.f32 = static_cast<float>(v.real); break;
        case 'd': f.value.f64 = v.real; break;
        case 'V': break;
        case 'A': {
            auto& items = values_.emplace_back();
            for (const auto& item : v.items) items.push_back(field_of(item));
            f.value.array = amqp_array_t{static_cast<int>(items.size()), items.data()};
            break;
        }
        case 'F': {
            table t;
            for (std::size_t i = 0; i < v.items.size(); ++i) t.push_back({v.names[i], v.items[i]});
            auto& kept = tables_.emplace_back(std::move(t));
            f.value.table = table_of(kept);
            break;
        }
        default: throw std::logic_error("unknown field kind");
        }
        return f;
    }

private:
    // Deques: growing them never moves what earlier calls point at.
    std::deque<std::vector<amqp_table_entry_t>> entries_;
    std::deque<std::vector<amqp_field_value_t>> values_;
    std::deque<table> tables_;
};

// ---------------------------------------------------------------------------------------
// The client.

/// Something went wrong with the server or the connection, not a disagreement.
struct fatal : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A message taken with basic.get: the get-ok fields and the content.
struct got_message {
    std::uint64_t delivery_tag = 0;
    bool redelivered = false;
    std::string exchange;
    std::string routing_key;
    std::uint32_t message_count = 0; // ready messages left in the queue
    std::string body;
    std::optional<std::uint8_t> priority;
    std::optional<std::string> expiration;
    table headers; // empty when the message has none
};

/// One connection with one channel. A channel error is acknowledged and the channel
/// reopened at once (in confirm mode if asked), so the connection stays usable; the
/// call that met it returns the reply code.
class amqp_client {
public:
    amqp_client(const std::string& host, int port, double connect_timeout, bool confirms = true)
        : confirms_(confirms) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(connect_timeout);
        for (;;) {
            std::string why;
            if (try_connect(host, port, why)) break;
            if (std::chrono::steady_clock::now() > deadline) throw fatal("cannot connect to RabbitMQ: " + why);
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
        open_channel();
    }
    ~amqp_client() {
        if (conn_ == nullptr) return;
        amqp_channel_close(conn_, channel, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn_);
    }
    amqp_client(const amqp_client&) = delete;
    amqp_client& operator=(const amqp_client&) = delete;

    static constexpr amqp_channel_t channel = 1;

    /// Closes the socket without the closing handshake, for a connection the server closed
    /// (which waits for a close-ok that a polite close would not send).
    void drop() noexcept {
        if (conn_ == nullptr) return;
        amqp_destroy_connection(conn_);
        conn_ = nullptr;
    }

    /// The reply text of the last channel error.
    [[nodiscard]] const std::string& last_error() const { return last_error_; }
    /// How many channel errors the server raised.
    [[nodiscard]] std::size_t channel_errors() const { return channel_errors_; }

    /// Sends `method` and waits for `expected`; returns 0 or the reply code of the channel
    /// error.
    int rpc(amqp_method_number_t method, void* request, amqp_method_number_t expected) {
        amqp_method_number_t replies[] = {expected, 0};
        const int code = reply_code(amqp_simple_rpc(conn_, channel, method, replies, request));
        amqp_maybe_release_buffers(conn_);
        return code;
    }

    /// queue.declare; returns 0 or the reply code. `message_count` gets the queue's ready
    /// messages.
    int declare_queue(const std::string& name, const table& arguments, bool passive = false,
                      std::uint32_t* message_count = nullptr) {
        amqp_arena arena;
        amqp_queue_declare_t m{};
        m.queue = amqp_arena::bytes(name);
        m.passive = passive ? 1 : 0;
        m.arguments = arena.table_of(arguments);
        amqp_method_number_t replies[] = {AMQP_QUEUE_DECLARE_OK_METHOD, 0};
        const amqp_rpc_reply_t r = amqp_simple_rpc(conn_, channel, AMQP_QUEUE_DECLARE_METHOD, replies, &m);
        const int code = reply_code(r);
        if (code == 0 && message_count != nullptr) {
            *message_count = static_cast<const amqp_queue_declare_ok_t*>(r.reply.decoded)->message_count;
        }
        amqp_maybe_release_buffers(conn_);
        return code;
    }

    /// queue.delete; returns 0 or the reply code.
    int delete_queue(const std::string& name, bool if_unused = false) {
        amqp_queue_delete_t m{};
        m.queue = amqp_arena::bytes(name);
        m.if_unused = if_unused ? 1 : 0;
        return rpc(AMQP_QUEUE_DELETE_METHOD, &m, AMQP_QUEUE_DELETE_OK_METHOD);
    }

    /// Sends a method that has no reply (basic.ack, basic.reject, basic.nack).
    void send(amqp_method_number_t method, void* request) {
        if (amqp_send_method(conn_, channel, method, request) != AMQP_STATUS_OK) {
            throw fatal("cannot send a method to RabbitMQ");
        }
    }

    /// A round trip on the channel (basic.qos with no limit, which changes nothing): once
    /// it returns, the server's channel has handled every method sent before. Returns 0,
    /// or the reply code if one of those closed the channel.
    int round_trip() {
        amqp_basic_qos_t qos{};
        return rpc(AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD);
    }

    /// Publishes without waiting; settle() waits for the confirm. Returns the message's
    /// confirm sequence number (0 without confirms).
    std::uint64_t publish(const std::string& exchange, const std::string& key, bool mandatory,
                          const amqp_basic_properties_t& props, const std::string& body) {
        const int status = amqp_basic_publish(conn_, channel, amqp_arena::bytes(exchange), amqp_arena::bytes(key),
                                              mandatory ? 1 : 0, 0, &props, amqp_arena::bytes(body));
        if (status != AMQP_STATUS_OK) throw fatal(std::string("basic.publish: ") + amqp_error_string2(status));
        if (!confirms_) return 0;
        unconfirmed_.insert(++next_tag_);
        return next_tag_;
    }

    /// Waits until every message published so far is confirmed. Returned messages go to
    /// `on_return` (reply code, body); nacked sequence numbers into `nacked`, or with
    /// no `nacked` a nack is fatal. Returns 0, or the reply code if the server closed the
    /// channel, in which case the unconfirmed messages after the failing one were dropped.
    int settle(const std::function<void(int, std::string_view)>& on_return, std::set<std::uint64_t>* nacked = nullptr) {
        while (!unconfirmed_.empty()) {
            amqp_frame_t frame;
            timeval timeout{30, 0};
            const int status = amqp_simple_wait_frame_noblock(conn_, &frame, &timeout);
            if (status == AMQP_STATUS_TIMEOUT) throw fatal("no publisher confirm from RabbitMQ within 30 s");
            if (status != AMQP_STATUS_OK) throw fatal(std::string("waiting for confirms: ") + amqp_error_string2(status));
            if (frame.frame_type != AMQP_FRAME_METHOD) continue;
            switch (frame.payload.method.id) {
            case AMQP_BASIC_ACK_METHOD: {
                const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
                confirmed(ack->delivery_tag, ack->multiple != 0, nullptr);
                break;
            }
            case AMQP_BASIC_NACK_METHOD: {
                if (nacked == nullptr) throw fatal("RabbitMQ nacked a message");
                const auto* nack = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
                confirmed(nack->delivery_tag, nack->multiple != 0, nacked);
                break;
            }
            case AMQP_BASIC_RETURN_METHOD: {
                const auto code = static_cast<const amqp_basic_return_t*>(frame.payload.method.decoded)->reply_code;
                amqp_message_t msg;
                const amqp_rpc_reply_t r = amqp_read_message(conn_, channel, &msg, 0);
                if (r.reply_type != AMQP_RESPONSE_NORMAL) throw fatal("reading a returned message failed");
                const std::string body = text_of(msg.body);
                amqp_destroy_message(&msg);
                on_return(code, body);
                break;
            }
            case AMQP_CHANNEL_CLOSE_METHOD: {
                const int code = closed(*static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded));
                unconfirmed_.clear();
                return code;
            }
            case AMQP_CONNECTION_CLOSE_METHOD: throw fatal("RabbitMQ closed the connection");
            default: break;
            }
        }
        amqp_maybe_release_buffers(conn_);
        return 0;
    }

    /// basic.get: returns 0 and sets `out` (nothing if the queue is empty), or the reply
    /// code of the channel error (404 for a missing queue).
    int get(const std::string& queue, bool no_ack, std::optional<got_message>& out) {
        out.reset();
        amqp_basic_get_t m{};
        m.queue = amqp_arena::bytes(queue);
        m.no_ack = no_ack ? 1 : 0;
        amqp_method_number_t replies[] = {AMQP_BASIC_GET_OK_METHOD, AMQP_BASIC_GET_EMPTY_METHOD, 0};
        const amqp_rpc_reply_t r = amqp_simple_rpc(conn_, channel, AMQP_BASIC_GET_METHOD, replies, &m);
        if (const int code = reply_code(r); code != 0) return code;
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
            amqp_maybe_release_buffers(conn_);
            return 0;
        }
        got_message g;
        const auto* ok = static_cast<const amqp_basic_get_ok_t*>(r.reply.decoded);
        g.delivery_tag = ok->delivery_tag;
        g.redelivered = ok->redelivered != 0;
        g.exchange = text_of(ok->exchange);
        g.routing_key = text_of(ok->routing_key);
        g.message_count = ok->message_count;
        amqp_message_t msg;
        if (amqp_read_message(conn_, channel, &msg, 0).reply_type != AMQP_RESPONSE_NORMAL) {
            throw fatal("reading a message from " + queue + " failed");
        }
        g.body = text_of(msg.body);
        const amqp_basic_properties_t& p = msg.properties;
        if (p._flags & AMQP_BASIC_PRIORITY_FLAG) g.priority = p.priority;
        if (p._flags & AMQP_BASIC_EXPIRATION_FLAG) g.expiration = text_of(p.expiration);
        if (p._flags & AMQP_BASIC_HEADERS_FLAG) g.headers = from_amqp(p.headers);
        amqp_destroy_message(&msg);
        amqp_maybe_release_buffers(conn_);
        out = std::move(g);
        return 0;
    }

    /// Drops whatever the server sent that nobody waits for (deliveries, cancels).
    void discard_pending_frames() {
        for (;;) {
            amqp_frame_t frame;
            timeval none{0, 0};
            if (amqp_simple_wait_frame_noblock(conn_, &frame, &none) != AMQP_STATUS_OK) break;
        }
        amqp_maybe_release_buffers(conn_);
    }

    [[nodiscard]] amqp_connection_state_t connection() const { return conn_; }

private:
    bool try_connect(const std::string& host, int port, std::string& why) {
        conn_ = amqp_new_connection();
        amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
        timeval timeout{5, 0};
        const int status = socket != nullptr ? amqp_socket_open_noblock(socket, host.c_str(), port, &timeout)
                                             : AMQP_STATUS_NO_MEMORY;
        if (status == AMQP_STATUS_OK) {
            const amqp_rpc_reply_t r =
                amqp_login(conn_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
            if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
            why = "login failed";
        } else {
            why = amqp_error_string2(status);
        }
        amqp_destroy_connection(conn_);
        conn_ = nullptr;
        return false;
    }

    void open_channel() {
        if (amqp_channel_open(conn_, channel) == nullptr ||
            (confirms_ && amqp_confirm_select(conn_, channel) == nullptr)) {
            throw fatal("cannot open a channel");
        }
        next_tag_ = 0; // confirms count from 1 on each channel
    }

    void confirmed(std::uint64_t tag, bool multiple, std::set<std::uint64_t>* nacked) {
        const auto first = multiple ? unconfirmed_.begin() : unconfirmed_.lower_bound(tag);
        const auto last = unconfirmed_.upper_bound(tag);
        if (nacked != nullptr) nacked->insert(first, last);
        unconfirmed_.erase(first, last);
    }

    /// Acknowledges a server channel.close and reopens the channel; returns its code.
    int closed(const amqp_channel_close_t& close) {
        last_error_ = text_of(close.reply_text);
        const int code = close.reply_code;
        amqp_channel_close_ok_t ok{};
        if (amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK) {
            throw fatal("cannot acknowledge channel.close");
        }
        amqp_maybe_release_buffers_on_channel(conn_, channel);
        ++channel_errors_;
        open_channel();
        return code;
    }

    int reply_code(const amqp_rpc_reply_t& r) {
        switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL: return 0;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                return closed(*static_cast<const amqp_channel_close_t*>(r.reply.decoded));
            }
            if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                const auto* c = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
                throw fatal("RabbitMQ closed the connection: " + std::to_string(c->reply_code) + " " +
                            text_of(c->reply_text));
            }
            throw fatal("unexpected server exception");
        case AMQP_RESPONSE_LIBRARY_EXCEPTION: throw fatal(std::string("rabbitmq-c: ") + amqp_error_string2(r.library_error));
        case AMQP_RESPONSE_NONE: break;
        }
        throw fatal("no reply from RabbitMQ");
    }

    amqp_connection_state_t conn_ = nullptr;
    bool confirms_;
    std::uint64_t next_tag_ = 0;
    std::set<std::uint64_t> unconfirmed_;
    std::string last_error_;
    std::size_t channel_errors_ = 0;
};

} // namespace differential
