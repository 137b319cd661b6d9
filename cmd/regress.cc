// dsv3 regress: CI's gate. Compares results.json with a baseline (schema in eval/regress.h),
// prints the table, exits 0 when every baseline metric holds, 3 when any regressed, 2 on
// malformed input or a baseline metric the results lack.
#include "eval/regress.h"

#include <iostream>

#include "cmd/commands.h"
#include "cmd/options.h"
#include "engine/base/file.h"

namespace dsv3::cmd {

int RunRegress(int argc, char** argv) {
  OptionParser opts("regress", "Compare eval results against a baseline; exit 3 on a regression.");
  opts.Add()("results", po::value<std::string>()->required(), "results.json of this build")(
      "baseline", po::value<std::string>()->required(), "baseline results.json")(
      "tolerance", po::value<double>()->default_value(0.01),
      "absolute drop always allowed, in the metric's units")(
      "stderr-multiple", po::value<double>()->default_value(2.0),
      "also allow a drop up to this many standard errors");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("regress", st);
  if (opts.help()) return kExitOk;
  RegressOptions ro;
  ro.tolerance = opts.Get<double>("tolerance");
  ro.stderr_multiple = opts.Get<double>("stderr-multiple");
  const std::string results_path = opts.Get<std::string>("results");
  const std::string baseline_path = opts.Get<std::string>("baseline");
  auto results = ReadFile(results_path);
  if (!results.ok()) return ReportError("regress", results.status());
  auto baseline = ReadFile(baseline_path);
  if (!baseline.ok()) return ReportError("regress", baseline.status());
  auto report = CompareResults(*results, results_path, *baseline, baseline_path, ro);
  if (!report.ok()) return ReportError("regress", report.status());
  std::cout << FormatRegressTable(*report);
  return report->regressed ? kExitRegression : kExitOk;
}

}  // namespace dsv3::cmd
