#pragma once
// Internal to the analysis module: number formatting and the recommendation line of a plan.
#include <string>

namespace tandem::analysis {

struct Plan;

// "1.50 GiB", "12.0 MiB", "512 B".
std::string fmt_bytes(double bytes);
// "77.1 s", "12.3 ms", "4.0 us".
std::string fmt_seconds(double s);
// One line: why plan.best was chosen, or why nothing fits.
std::string recommendation_reason(const Plan& plan);

}  // namespace tandem::analysis
