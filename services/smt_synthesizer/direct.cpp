#include "services/smt_synthesizer/direct.hpp"
