// A fixed-step game loop that talks through warren.
//
// Entities bounce around a box. Each frame:
//   1. physics moves them and publishes collision events to the "world" topic exchange
//      (physics.collision.wall, physics.collision.entity);
//   2. first drain point: the systems that must react within the frame (audio, damage)
//      get their events, within a budget of wall time (dispatch_for: 100 us of
//      std::chrono::steady_clock); mixing a sound takes a few microseconds, so on busy
//      frames the budget stops the drain and the rest waits for the second drain point;
//   3. game logic despawns entities that took too many hits and spawns replacements
//      (entity.despawn.<kind>, entity.spawn.<kind>); the spawner system itself reacts to
//      despawns by publishing spawns from inside its callback;
//   4. a "frame" fanout exchange tells every system the frame ended;
//   5. second drain point: everything left is delivered.
// The broker is single-threaded: no locks, no atomics, and no allocation per event once
// warm. The broker's time is a warren::manual_clock advanced by the fixed step, so the
// UI's toast queue (x-message-ttl) expires in simulation time, while the frame budget is
// measured in real time: the two clocks are independent.
//
// It prints per-frame timings and checks that every event reached exactly the systems
// its routing key says; it exits 1 if not.
//
//     build/gcc/examples/game_loop [frames]

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <warren/warren.hpp>

namespace {

// ---------------------------------------------------------------------------------------
// events: one body type for every exchange, moved into the broker

struct spawn {
    std::uint32_t entity;
    bool enemy;
    float x, y;
};
struct despawn {
    std::uint32_t entity;
    bool enemy;
};
struct collision {
    std::uint32_t a, b; // b == a for a wall
    float impulse;
};
struct frame_end {
    std::uint64_t frame;
};
using game_event = std::variant<spawn, despawn, collision, frame_end>;
using broker_type = warren::basic_broker<warren::basic_message<game_event>, warren::single_threaded>;
using delivery_type = broker_type::delivery;

// ---------------------------------------------------------------------------------------
// the world

struct entity {
    std::uint32_t id;
    bool enemy;
    float x, y, vx, vy;
    int hits = 0;
    bool alive = true;
};

constexpr float box = 100.0f;
constexpr float radius = 1.5f;
constexpr auto step = std::chrono::milliseconds(16);          // the fixed simulation step
constexpr auto react_budget = std::chrono::microseconds(100); // wall time for the first drain
constexpr auto mix_time = std::chrono::microseconds(4);       // what the audio system spends per sound

struct tally {
    std::uint64_t published = 0; // events published
    std::uint64_t expected = 0;  // deliveries their routing keys call for
    std::uint64_t delivered = 0; // deliveries the systems saw
};

struct frame_timing {
    double simulate_us = 0; // physics and game logic, not the broker
    double publish_us = 0;  // publishing: routing and enqueueing
    double drain_us = 0;    // dispatch: delivery to the systems' callbacks
    std::size_t events = 0;
};

double micros_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
}

/// The audio system's work for one sound: real time, which the frame budget measures.
void mix_sound() {
    const auto until = std::chrono::steady_clock::now() + mix_time;
    while (std::chrono::steady_clock::now() < until) {
    }
}

} // namespace

int main(int argc, char** argv) {
    const int frames = argc > 1 ? std::max(1, std::atoi(argv[1])) : 120;

    warren::manual_clock sim_time;
    broker_type broker(sim_time);

    // Topology: a topic exchange for world events, a fanout for the end of each frame.
    broker.declare_exchange("world", "topic");
    broker.declare_exchange("frame", "fanout");
    broker.declare_queue("audio");   // every collision, and enemy spawns (a growl)
    broker.declare_queue("damage");  // collisions between entities
    broker.declare_queue("spawner"); // despawns: it publishes replacements
    broker.declare_queue("score");   // enemy despawns
    // Toasts older than three frames are stale: the UI shows only fresh ones.
    broker.declare_queue("ui", {.arguments = {{"x-message-ttl", 48}, {"x-max-length", 8}}});
    broker.bind_queue("audio", "world", "physics.collision.#");
    broker.bind_queue("audio", "world", "entity.spawn.enemy");
    broker.bind_queue("damage", "world", "physics.collision.entity");
    broker.bind_queue("spawner", "world", "entity.despawn.*");
    broker.bind_queue("score", "world", "entity.despawn.enemy");
    broker.bind_queue("ui", "world", "entity.*.enemy");
    for (const char* system : {"audio", "damage", "spawner", "score"}) broker.bind_queue(system, "frame");

    const auto world = broker.make_publisher("world");
    const auto frame = broker.make_publisher("frame");

    std::mt19937 rng(42);
    std::uniform_real_distribution<float> position(radius, box - radius);
    std::uniform_real_distribution<float> speed(-20.0f, 20.0f);
    std::vector<entity> entities;
    tally counts;

    auto publish = [&](std::string key, game_event e, int expected_systems) {
        (void)world.publish({.routing_key = std::move(key), .body = e});
        ++counts.published;
        counts.expected += static_cast<std::uint64_t>(expected_systems);
    };
    // An entity's id is its slot; a respawn reuses the slot of the one that left.
    auto add_entity = [&](std::uint32_t slot, bool enemy) {
        entity e{slot, enemy, position(rng), position(rng), speed(rng), speed(rng)};
        if (slot == entities.size()) entities.push_back(e);
        else entities[slot] = e;
        // audio (enemies) and ui (enemies) hear of it
        publish(enemy ? "entity.spawn.enemy" : "entity.spawn.ally", spawn{e.id, enemy, e.x, e.y}, enemy ? 2 : 0);
    };
    for (std::uint32_t i = 0; i < 200; ++i) add_entity(i, i % 4 == 0);

    // Systems. Each counts what it gets; the spawner publishes from inside its callback.
    std::uint64_t sounds = 0, damage_events = 0, score = 0, frame_ends = 0;
    std::uint64_t respawns_wanted = 0;
    auto audio = broker.subscribe("audio", [&](delivery_type& d) {
        ++counts.delivered;
        if (!std::holds_alternative<frame_end>(d.body())) {
            ++sounds;
            mix_sound();
        }
    });
    auto damage = broker.subscribe("damage", [&](delivery_type& d) {
        ++counts.delivered;
        if (const auto* c = std::get_if<collision>(&d.body())) {
            ++damage_events;
            entities[c->a].hits += 1;
            entities[c->b].hits += 1;
        }
    });
    auto spawner = broker.subscribe("spawner", [&](delivery_type& d) {
        ++counts.delivered;
        if (const auto* gone = std::get_if<despawn>(&d.body())) {
            ++respawns_wanted;
            add_entity(gone->entity, gone->enemy); // publishing from a callback
        }
    });
    auto scorer = broker.subscribe("score", [&](delivery_type& d) {
        ++counts.delivered;
        if (std::holds_alternative<despawn>(d.body())) score += 10;
    });

    std::vector<frame_timing> timings;
    timings.reserve(static_cast<std::size_t>(frames));
    std::uint64_t toasts_seen = 0;
    std::vector<double> react_times; // the first drain point of each warm frame, against react_budget
    react_times.reserve(static_cast<std::size_t>(frames));
    int frames_with_spillover = 0; // frames whose first drain left reactions for the second
    const float dt = std::chrono::duration<float>(step).count();

    for (int f = 0; f < frames; ++f) {
        frame_timing timing;
        const std::uint64_t published_before = counts.published;

        // 1. physics: find this frame's collisions, then publish them
        struct found {
            const char* key;
            collision event;
            int systems;
        };
        thread_local std::vector<found> hits; // kept across frames: no allocation once warm
        hits.clear();
        auto start = std::chrono::steady_clock::now();
        for (auto& e : entities) {
            if (!e.alive) continue;
            e.x += e.vx * dt;
            e.y += e.vy * dt;
            bool wall = false;
            if (e.x < radius || e.x > box - radius) { e.vx = -e.vx; wall = true; }
            if (e.y < radius || e.y > box - radius) { e.vy = -e.vy; wall = true; }
            e.x = std::clamp(e.x, radius, box - radius);
            e.y = std::clamp(e.y, radius, box - radius);
            if (wall) hits.push_back({"physics.collision.wall", collision{e.id, e.id, std::abs(e.vx) + std::abs(e.vy)}, 1});
        }
        for (std::size_t i = 0; i < entities.size(); ++i) {
            for (std::size_t j = i + 1; j < entities.size(); ++j) {
                const entity& a = entities[i];
                const entity& b = entities[j];
                if (!a.alive || !b.alive) continue;
                const float dx = a.x - b.x, dy = a.y - b.y;
                if (dx * dx + dy * dy < 4 * radius * radius) {
                    hits.push_back({"physics.collision.entity", collision{a.id, b.id, 1.0f}, 2}); // audio, damage
                }
            }
        }
        timing.simulate_us += micros_since(start);
        start = std::chrono::steady_clock::now();
        for (const auto& hit : hits) publish(hit.key, hit.event, hit.systems);
        timing.publish_us += micros_since(start);

        // 2. first drain point: react within the frame, within a budget of wall time
        start = std::chrono::steady_clock::now();
        broker.dispatch_for(react_budget);
        const double react_us = micros_since(start);
        timing.drain_us += react_us;
        if (f >= 3) react_times.push_back(react_us);
        if (broker.message_count("audio") + broker.message_count("damage") > 0) ++frames_with_spillover;

        // 3. game logic: entities with three hits or more leave (publishing is cheap enough
        //    to time with the logic here)
        start = std::chrono::steady_clock::now();
        for (auto& e : entities) {
            if (e.alive && e.hits >= 3) {
                e.alive = false;
                // spawner, and for enemies score and ui
                publish(e.enemy ? "entity.despawn.enemy" : "entity.despawn.ally", despawn{e.id, e.enemy},
                        e.enemy ? 3 : 1);
            }
        }
        // 4. end of frame, to every system
        (void)frame.publish({.routing_key = "", .body = frame_end{static_cast<std::uint64_t>(f)}});
        ++counts.published;
        counts.expected += 4;
        timing.publish_us += micros_since(start);

        // 5. second drain point: everything else (spawns published by the spawner included)
        start = std::chrono::steady_clock::now();
        while (broker.dispatch() > 0) {
        }
        timing.drain_us += micros_since(start);

        // The UI refreshes its toasts every fifth frame; by then the oldest have expired
        // in simulation time (or were pushed out by newer ones at the length limit).
        if (f % 5 == 4) {
            while (auto toast = broker.try_get("ui")) ++toasts_seen;
        }

        sim_time.advance(step);
        timing.events = static_cast<std::size_t>(counts.published - published_before);
        timings.push_back(timing);
        frame_ends += 1;
    }

    // Per-frame timings: the first frames (cold), then every 20th.
    std::printf("frame  events  simulate us  publish us  drain us  broker ns/event\n");
    for (std::size_t f = 0; f < timings.size(); ++f) {
        if (f >= 3 && f % 20 != 0) continue;
        const auto& t = timings[f];
        std::printf("%5zu  %6zu  %11.1f  %10.1f  %8.1f  %15.1f\n", f, t.events, t.simulate_us, t.publish_us,
                    t.drain_us,
                    t.events == 0 ? 0.0 : (t.publish_us + t.drain_us) * 1000.0 / static_cast<double>(t.events));
    }
    double broker_us = 0, worst_us = 0;
    std::size_t total_events = 0;
    for (std::size_t f = 3; f < timings.size(); ++f) { // warm frames only
        const double us = timings[f].publish_us + timings[f].drain_us;
        broker_us += us;
        worst_us = std::max(worst_us, us);
        total_events += timings[f].events;
    }
    const auto warm_frames = static_cast<double>(timings.size() > 3 ? timings.size() - 3 : 1);
    std::printf("warm frames: the broker took %.1f us per frame on average (worst %.1f us) for %.0f events "
                "and their deliveries: %.1f ns per event\n",
                broker_us / warm_frames, worst_us, static_cast<double>(total_events) / warm_frames,
                total_events == 0 ? 0.0 : broker_us * 1000.0 / static_cast<double>(total_events));

    // The clock is read before each delivery, so a drain overruns by at most the callback it
    // started in time (a sound: mix_time), unless the thread is preempted meanwhile.
    std::sort(react_times.begin(), react_times.end());
    const double median_react_us = react_times.empty() ? 0.0 : react_times[react_times.size() / 2];
    const double longest_react_us = react_times.empty() ? 0.0 : react_times.back();
    std::printf("first drain point: budget %lld us of wall time (a sound takes %lld us); warm frames: median %.1f us, "
                "longest %.1f us; %d of %d frames left reactions for the second drain point\n",
                static_cast<long long>(react_budget.count()), static_cast<long long>(mix_time.count()), median_react_us,
                longest_react_us, frames_with_spillover, frames);
    std::printf("simulation time: %lld ms in %d steps of %lld ms; the ui toasts expired by it\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(sim_time.elapsed()).count()),
                frames, static_cast<long long>(step.count()));
    const auto ui = broker.queue_stats("ui");
    std::printf("events %llu, deliveries %llu (expected %llu); sounds %llu, damage %llu, respawns %llu, "
                "score %llu; ui toasts shown %llu, expired %llu, dropped at the limit %llu\n",
                static_cast<unsigned long long>(counts.published), static_cast<unsigned long long>(counts.delivered),
                static_cast<unsigned long long>(counts.expected), static_cast<unsigned long long>(sounds),
                static_cast<unsigned long long>(damage_events), static_cast<unsigned long long>(respawns_wanted),
                static_cast<unsigned long long>(score), static_cast<unsigned long long>(toasts_seen),
                static_cast<unsigned long long>(ui.dropped.expired), static_cast<unsigned long long>(ui.dropped.maxlen));

    // Every delivery accounted for: what the keys called for (the ui queue is read with
    // try_get, so it is counted apart: shown + expired + dropped + waiting = what reached it).
    const bool ok = counts.delivered + ui.enqueued == counts.expected && ui.accounted() &&
                    toasts_seen + ui.dropped.expired + ui.dropped.maxlen + ui.ready == ui.enqueued && frame_ends == static_cast<std::uint64_t>(frames) &&
                    (frames < 60 || (damage_events > 0 && respawns_wanted > 0));
    if (!ok) {
        std::fprintf(stderr, "game_loop: deliveries do not add up\n");
        return 1;
    }
    return 0;
}
