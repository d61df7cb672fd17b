#pragma once
#include "freertos/FreeRTOS.h"
#ifdef __cplusplus
extern "C" {
#endif
typedef struct QueueDefinition *SemaphoreHandle_t;
typedef struct { void *opaque[20]; } StaticSemaphore_t;
SemaphoreHandle_t xSemaphoreCreateRecursiveMutexStatic(StaticSemaphore_t *storage);
BaseType_t xSemaphoreTakeRecursive(SemaphoreHandle_t m, TickType_t ticks);
BaseType_t xSemaphoreGiveRecursive(SemaphoreHandle_t m);
#ifdef __cplusplus
}
#endif
