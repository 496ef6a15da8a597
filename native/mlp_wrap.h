// Synchronous MLP entry points (one crossing per minibatch): mlpForward, mlpTrainStep,
// mlpParamCount, and the test hooks _mlpGradient, _mlpLayout, _mlpDropoutBits, _mlpMemoryBytes.
#pragma once
#include <napi.h>

namespace rapm {

// Adds the MLP functions to `exports`.
void MlpWrapInit(Napi::Env env, Napi::Object exports);

}  // namespace rapm
