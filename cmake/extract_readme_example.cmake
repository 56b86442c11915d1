# Extract the first ```cpp fenced block of a Markdown file into a .cpp file.
#
#   cmake -DINPUT=README.md -DOUTPUT=readme_example.cpp -P extract_readme_example.cmake
#
# The output starts with a #line directive so compiler diagnostics point at
# the right line of README.md.
if(NOT DEFINED INPUT OR NOT DEFINED OUTPUT)
    message(FATAL_ERROR "usage: cmake -DINPUT=<README.md> -DOUTPUT=<file.cpp> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
if(NOT EXISTS "${INPUT}")
    message(FATAL_ERROR "${INPUT} does not exist")
endif()

file(READ "${INPUT}" _text)
string(REPLACE "\r\n" "\n" _text "${_text}")
# A leading newline lets a fence on the very first line match "\n```cpp".
set(_text "\n${_text}")

string(REGEX MATCH "\n```cpp[ \t]*\n" _open "${_text}")
if(NOT _open)
    message(FATAL_ERROR "${INPUT}: no ```cpp fenced code block found")
endif()
string(FIND "${_text}" "${_open}" _open_pos)
string(LENGTH "${_open}" _open_len)
math(EXPR _body_pos "${_open_pos} + ${_open_len}")
string(SUBSTRING "${_text}" ${_body_pos} -1 _rest)

# The closing fence: ``` at the start of a line (the body may be empty).
set(_rest "\n${_rest}")
string(FIND "${_rest}" "\n```" _close_pos)
if(_close_pos EQUAL -1)
    message(FATAL_ERROR "${INPUT}: the first ```cpp block is not closed")
endif()
string(SUBSTRING "${_rest}" 1 ${_close_pos} _body)
if(_close_pos EQUAL 0)
    set(_body "")
endif()

# 1-based README line of the first body line = newlines before it (the extra
# leading newline we added makes the count come out right).
string(SUBSTRING "${_text}" 0 ${_body_pos} _before)
string(REGEX MATCHALL "\n" _nls "${_before}")
list(LENGTH _nls _line)

set(_content "// Generated from ${INPUT} by extract_readme_example.cmake. Do not edit.\n#line ${_line} \"${INPUT}\"\n${_body}")
file(WRITE "${OUTPUT}" "${_content}")
