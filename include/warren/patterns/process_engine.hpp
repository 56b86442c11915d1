#pragma once
/// @file patterns/process_engine.hpp
/// The process engine (issue 13, point 4) in one include: workflow definitions, instance
/// state and history, the stores (memory, file), the engine and its task workers.

#include "engine/data.hpp"
#include "engine/definition.hpp"
#include "engine/file_store.hpp"
#include "engine/instance.hpp"
#include "engine/process_engine.hpp"
#include "engine/store.hpp"
#include "engine/task_worker.hpp"
