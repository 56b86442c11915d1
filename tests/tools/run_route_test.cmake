# Runs warren-route on one fixture and checks what it did. Registered as ctest tests by
# tools/CMakeLists.txt; run as
#   cmake -DTOOL=<warren-route> -DTOPOLOGY=<file> -DMESSAGES=<file> [-DARGS=a,b]
#         [-DEXPECTED=<file>] [-DEXIT=<status>] [-DSTDERR_REGEX=<regex>]
#         [-DSTDOUT_REGEX=<regex>] [-DBENCH=ON [-DBENCH_CACHE=<regex>]] -P run_route_test.cmake
#
#   EXPECTED      stdout must equal this file (with BENCH, all of stdout but its last line)
#   EXIT          the exit status wanted (default 0)
#   STDERR_REGEX  stderr, without its final newline, must match; without it stderr
#                 must be empty
#   STDOUT_REGEX  stdout must match (for --help)
#   BENCH         the last stdout line must read
#                 messages=<n> ns_per_message=<x> cache_hit_rate=<r>, n > 0
#   BENCH_CACHE   r must match this regex (default: a rate, off or n/a)
#   ARGS          options before TOPOLOGY, separated by commas

foreach(var TOOL MESSAGES)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "run_route_test.cmake: ${var} is not set")
    endif()
endforeach()
if(NOT DEFINED EXIT)
    set(EXIT 0)
endif()

set(args "")
if(ARGS)
    string(REPLACE "," ";" args "${ARGS}")
endif()
if(TOPOLOGY)
    list(APPEND args "${TOPOLOGY}")
endif()

execute_process(
    COMMAND "${TOOL}" ${args}
    INPUT_FILE "${MESSAGES}"
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err
    RESULT_VARIABLE status)

set(failures "")
if(NOT status STREQUAL "${EXIT}")
    string(APPEND failures "exit status ${status}, expected ${EXIT}\n")
endif()

if(DEFINED STDERR_REGEX)
    # Without its final newline, so that `$` in a regex ends the last line.
    string(REGEX REPLACE "\n$" "" err_text "${err}")
    if(NOT err_text MATCHES "${STDERR_REGEX}")
        string(APPEND failures "stderr does not match: ${STDERR_REGEX}\n")
    endif()
elseif(NOT err STREQUAL "")
    string(APPEND failures "stderr should be empty\n")
endif()

if(DEFINED STDOUT_REGEX AND NOT out MATCHES "${STDOUT_REGEX}")
    string(APPEND failures "stdout does not match: ${STDOUT_REGEX}\n")
endif()

set(checked "${out}")
if(BENCH)
    # Split off the last line; everything before it is the ordinary output.
    string(REGEX REPLACE "\n$" "" body "${out}")
    string(FIND "${body}" "\n" newline REVERSE)
    math(EXPR start "${newline} + 1")
    string(SUBSTRING "${body}" ${start} -1 last)
    string(SUBSTRING "${body}" 0 ${start} checked)
    if(NOT DEFINED BENCH_CACHE)
        set(BENCH_CACHE "[01]\\.[0-9][0-9][0-9]|off|n/a")
    endif()
    if(NOT last MATCHES "^messages=[1-9][0-9]* ns_per_message=[0-9]+\\.[0-9] cache_hit_rate=(.*)$")
        string(APPEND failures "last line '${last}' is not messages=<n> ns_per_message=<x> cache_hit_rate=<r>\n")
    elseif(NOT CMAKE_MATCH_1 MATCHES "^(${BENCH_CACHE})$")
        string(APPEND failures "cache_hit_rate=${CMAKE_MATCH_1} does not match ${BENCH_CACHE}\n")
    endif()
endif()

if(DEFINED EXPECTED)
    file(READ "${EXPECTED}" expected)
    if(NOT checked STREQUAL expected)
        string(APPEND failures "stdout differs from ${EXPECTED}\n--- expected\n${expected}--- got\n${checked}---\n")
    endif()
endif()

if(failures)
    message(FATAL_ERROR "warren-route ${args} < ${MESSAGES}\n${failures}--- stderr\n${err}---")
endif()
