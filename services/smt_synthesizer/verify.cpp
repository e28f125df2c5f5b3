#include "services/smt_synthesizer/verify.hpp"
