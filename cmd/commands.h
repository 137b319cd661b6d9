// The subcommand table: one entry per file in cmd/. Each Run gets argv with argv[0] being
// the subcommand name and returns the process exit code.
#pragma once

namespace dsv3::cmd {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

int RunInfo(int argc, char** argv);
int RunInit(int argc, char** argv);
int RunLogits(int argc, char** argv);
int RunGenerate(int argc, char** argv);
int RunTokenize(int argc, char** argv);
int RunEval(int argc, char** argv);
int RunRegress(int argc, char** argv);
int RunQuantize(int argc, char** argv);
int RunCompare(int argc, char** argv);
int RunBench(int argc, char** argv);

// Null-terminated.
extern const Command kCommands[];

}  // namespace dsv3::cmd
