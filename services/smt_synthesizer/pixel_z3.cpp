#include "services/smt_synthesizer/pixel_z3.hpp"
