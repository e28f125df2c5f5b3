#include "services/smt_synthesizer/cegis.hpp"
