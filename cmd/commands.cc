#include "cmd/commands.h"

namespace dsv3::cmd {

const Command kCommands[] = {




    {nullptr, nullptr, nullptr},
};

}  // namespace dsv3::cmd
