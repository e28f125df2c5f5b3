#include "services/smt_synthesizer/lifter.hpp"
