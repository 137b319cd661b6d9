// dsv3: one binary, many subcommands. Status → exit code happens here and in cmd/options.
#include <cstring>
#include <iostream>
#include <new>
#include <stdexcept>

#include "cmd/commands.h"
#include "cmd/options.h"
#include "engine/base/signal_cleanup.h"

int main(int argc, char** argv) {
  using dsv3::cmd::kCommands;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::cout << "usage: dsv3 COMMAND [options]   (dsv3 COMMAND --help for its options)\n\ncommands:\n";
    for (const auto* c = kCommands; c->name; ++c) std::cout << "  " << c->name << std::string(10 - std::strlen(c->name), ' ') << c->summary << "\n";
    return argc < 2 ? 2 : 0;
  }
  for (const auto* c = kCommands; c->name; ++c) {
    if (std::strcmp(argv[1], c->name)) continue;
    dsv3::InstallSignalCleanup();  // an interrupted run removes its temp files and staging
    // Errors travel as Status; what still throws (an allocation the machine cannot give, a
    // thread it will not start) ends as an error message with the runtime exit code, never
    // as std::terminate's abort.
    try {
      return c->run(argc - 1, argv + 1);
    } catch (const std::bad_alloc&) {
      std::cerr << "dsv3 " << c->name
                << ": error: out of memory (a smaller --max-seq-len or --batch-size, or a smaller model, needs less)\n";
    } catch (const std::exception& e) {
      std::cerr << "dsv3 " << c->name << ": error: " << e.what() << "\n";
    }
    return dsv3::cmd::kExitRuntime;
  }
  std::cerr << "dsv3: error: unknown command \"" << argv[1] << "\" (dsv3 --help lists them)\n";
  return 2;
}
