#pragma once
// The main() of a scenario differential test (consumer_differential, reply_to_differential):
// the command line, then each scenario run on warren and on RabbitMQ, their logs compared
// line by line.

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace differential {

/// Where the RabbitMQ is and how long to wait for it.
struct scenario_options {
    std::string host = "127.0.0.1";
    int port = 5672;
    double connect_timeout = 30;
    int quiet_ms = 300;   ///< how long without a delivery counts as "no more"
    bool verbose = false; ///< print the log of scenarios that agree too
};

/// Runs every scenario of `all` (each with a `title` and a `run(side&)`) on a fresh
/// WarrenSide and on a RabbitSide(options, prefix), whose queue names start with `tag`, a
/// random number and the scenario's index. `usage_text` is printed for --help and bad
/// arguments. Exit status: 0 all agree, 1 a disagreement, 2 usage, 3 another failure.
template <class WarrenSide, class RabbitSide, class Scenarios>
int run_scenarios(const char* program, const char* tag, const char* usage_text, const Scenarios& all, int argc,
                  char** argv) {
    scenario_options opts;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fputs(usage_text, stderr);
                std::exit(2);
            }
            return argv[++i];
        };
        try {
            if (arg == "--host") opts.host = next();
            else if (arg == "--port") opts.port = std::stoi(next());
            else if (arg == "--connect-timeout") opts.connect_timeout = std::stod(next());
            else if (arg == "--quiet-ms") opts.quiet_ms = std::stoi(next());
            else if (arg == "--verbose") opts.verbose = true;
            else if (arg == "--help" || arg == "-h") {
                std::fputs(usage_text, stdout);
                return 0;
            } else {
                std::fputs(usage_text, stderr);
                return 2;
            }
        } catch (const std::logic_error&) { // stoi and friends
            std::fputs(usage_text, stderr);
            return 2;
        }
    }
    std::random_device entropy;
    std::size_t failed = 0;
    try {
        for (std::size_t n = 0; n < all.size(); ++n) {
            char prefix[64];
            std::snprintf(prefix, sizeof prefix, "%s%08x-%zu-", tag, entropy(), n);
            WarrenSide ours;
            all[n].run(ours);
            std::vector<std::string> theirs;
            {
                RabbitSide rabbit(opts, prefix);
                all[n].run(rabbit);
                theirs = rabbit.log;
            }
            if (ours.log == theirs) {
                std::printf("agree: %s\n", all[n].title);
                if (opts.verbose) {
                    for (const auto& line : ours.log) std::printf("    %s\n", line.c_str());
                }
                continue;
            }
            ++failed;
            std::printf("DISAGREE: %s\n", all[n].title);
            const std::size_t lines = std::max(ours.log.size(), theirs.size());
            for (std::size_t i = 0; i < lines; ++i) {
                const std::string w = i < ours.log.size() ? ours.log[i] : "(nothing)";
                const std::string r = i < theirs.size() ? theirs[i] : "(nothing)";
                std::printf("  %s %-60s | %s\n", w == r ? " " : "!", w.c_str(), r.c_str());
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 3;
    }
    std::printf("%s: %zu tests failed out of %zu\n", program, failed, all.size());
    return failed == 0 ? 0 : 1;
}

} // namespace differential
