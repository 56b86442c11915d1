// RabbitMQ tutorial 2, "Work Queues", on warren.
// https://www.rabbitmq.com/tutorials/tutorial-two-python
//
// new_task sends tasks to the durable queue "task_queue" as persistent messages; each dot
// in a task is one second of work. Two workers consume with manual acks.
//
// The tutorial's point is fair dispatch: by default RabbitMQ hands out messages round
// robin, blind to how busy each worker is; with basic_qos(prefetch_count=1) a worker gets
// no new task until it has acked the one it holds. This program runs both, on a simulated
// clock: a worker moves its delivery out of the callback, "works" for as many simulated
// seconds as the task has dots, then acks. Nothing sleeps, so it runs in microseconds.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <warren/warren.hpp>

namespace {

const std::vector<std::string> tasks{"First task.....", "Second task.", "Third task.",
                                     "Fourth task.",    "Fifth task..", "Sixth task."};

int seconds_of_work(const std::string& task) { return static_cast<int>(std::count(task.begin(), task.end(), '.')); }

struct worker {
    std::string name;
    struct waiting {
        warren::delivery delivery;
        int since;
    };
    std::deque<waiting> inbox;               // delivered but not started (only without prefetch)
    std::optional<warren::delivery> current; // being worked on, not acked yet
    int busy_until = 0;
    std::vector<std::string> done;
    warren::subscription subscription;
};

struct outcome {
    std::vector<std::string> done_by[2];
    int finished_at = -1;
    bool over_prefetch = false; // a worker was handed a task while it held one unacked
    warren::queue_counters stats;
};

void say(int now, const worker& w, const std::string& text) {
    std::cout << "  t=" << now << "s  " << w.name << "  " << text << '\n';
}

outcome run(std::uint16_t prefetch) {
    warren::broker broker;
    outcome result;

    // new_task: a durable queue and persistent messages, so that in RabbitMQ the tasks
    // survive a broker restart. (In one process both flags are accepted and kept.)
    broker.declare_queue("task_queue", {.durable = true});
    for (const auto& task : tasks) {
        warren::message msg{.routing_key = "task_queue", .body = task};
        msg.properties.delivery_mode = 2; // persistent
        (void)broker.publish("", std::move(msg));
    }
    std::cout << "  new_task sent " << tasks.size() << " tasks: ";
    for (std::size_t i = 0; i < tasks.size(); ++i) std::cout << (i ? ", " : "") << '\'' << tasks[i] << '\'';
    std::cout << "\n\n";

    int now = 0;
    worker workers[2];
    workers[0].name = "worker 1";
    workers[1].name = "worker 2";
    for (int i = 0; i < 2; ++i) {
        worker& self = workers[i];
        const worker& other = workers[1 - i];
        workers[i].subscription = broker.subscribe(
            "task_queue",
            [&self, &other, &now, &result](warren::delivery& d) {
                std::string text = "[x] Received '" + d.body() + "'";
                const std::size_t held = self.inbox.size() + (self.current ? 1U : 0U);
                if (held > 0) {
                    text += "  (already holds " + std::to_string(held) + " unacked: this one waits)";
                    result.over_prefetch = true;
                } else if (other.current) {
                    text += "  (" + other.name + " is busy and has not acked: skipped)";
                }
                say(now, self, text);
                // Keep the delivery: it stays unacked until the simulated work is done.
                self.inbox.push_back({std::move(d), now});
            },
            {.ack = warren::ack_mode::manual, .prefetch = prefetch});
    }

    for (now = 0; now <= 60; ++now) { // 60 simulated seconds is far more than the work takes
        for (auto& w : workers) {
            if (w.current && w.busy_until == now) {
                w.current->ack();
                say(now, w, "[x] Done with '" + w.current->body() + "', ack");
                w.done.push_back(w.current->body());
                w.current.reset();
            }
        }
        broker.dispatch(); // acks made room: the broker hands out what it may
        for (auto& w : workers) {
            if (!w.current && !w.inbox.empty()) {
                const int waited = now - w.inbox.front().since;
                w.current.emplace(std::move(w.inbox.front().delivery));
                w.inbox.pop_front();
                w.busy_until = now + seconds_of_work(w.current->body());
                if (waited > 0) {
                    say(now, w, "starts '" + w.current->body() + "' after waiting " + std::to_string(waited) + "s");
                }
            }
        }
        const bool idle = std::all_of(std::begin(workers), std::end(workers),
                                      [](const worker& w) { return !w.current && w.inbox.empty(); });
        if (idle && broker.message_count("task_queue") == 0) {
            result.finished_at = now;
            break;
        }
    }
    result.done_by[0] = workers[0].done;
    result.done_by[1] = workers[1].done;
    result.stats = broker.queue_stats("task_queue");
    std::cout << "  all tasks done at t=" << result.finished_at << "s; worker 1 did " << workers[0].done.size()
              << ", worker 2 did " << workers[1].done.size() << "\n\n";
    return result;
}

} // namespace

int main() {
    std::cout << "Round-robin dispatch (no prefetch limit): tasks are handed out in turn, up front.\n";
    const outcome round_robin = run(0);

    std::cout << "Fair dispatch (prefetch 1, manual acks): a busy worker gets nothing until it acks.\n";
    const outcome fair = run(1);

    bool ok = true;
    auto expect = [&ok](bool condition, const char* what) {
        if (!condition) {
            std::cout << "FAILED: " << what << '\n';
            ok = false;
        }
    };
    using names = std::vector<std::string>;
    expect(round_robin.done_by[0] == names{"First task.....", "Third task.", "Fifth task.."} &&
               round_robin.done_by[1] == names{"Second task.", "Fourth task.", "Sixth task."},
           "round robin gives worker 1 the 1st, 3rd and 5th tasks");
    expect(round_robin.finished_at == 8, "round robin finishes at t=8s");
    expect(fair.done_by[0] == names{"First task.....", "Sixth task."} &&
               fair.done_by[1] == names{"Second task.", "Third task.", "Fourth task.", "Fifth task.."},
           "fair dispatch gives the busy worker nothing until it acks");
    expect(fair.finished_at == 6, "fair dispatch finishes at t=6s");
    expect(!fair.over_prefetch, "with prefetch 1 no worker ever held two tasks");
    for (const auto* r : {&round_robin, &fair}) {
        expect(r->stats.acked == tasks.size() && r->stats.unacked == 0 && r->stats.ready == 0 && r->stats.requeued == 0,
               "every task acked exactly once");
    }
    if (!ok) return 1;
    std::cout << "Fair dispatch finished at t=" << fair.finished_at << "s instead of t=" << round_robin.finished_at
              << "s: no task waited behind a long one while a worker was free.\n";
    return 0;
}
