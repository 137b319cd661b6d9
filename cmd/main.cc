// dsv3: one binary, many subcommands. Status → exit code happens here and in cmd/options.
#include <cstring>
#include <iostream>

#include "cmd/commands.h"

int main(int argc, char** argv) {
  using dsv3::cmd::kCommands;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::cout << "usage: dsv3 COMMAND [options]   (dsv3 COMMAND --help for its options)\n\ncommands:\n";
    for (const auto* c = kCommands; c->name; ++c) std::cout << "  " << c->name << std::string(10 - std::strlen(c->name), ' ') << c->summary << "\n";
    return argc < 2 ? 2 : 0;
  }
  for (const auto* c = kCommands; c->name; ++c)
    if (!std::strcmp(argv[1], c->name)) return c->run(argc - 1, argv + 1);
  std::cerr << "dsv3: error: unknown command \"" << argv[1] << "\" (dsv3 --help lists them)\n";
  return 2;
}
