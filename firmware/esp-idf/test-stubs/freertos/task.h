#pragma once
#include "freertos/FreeRTOS.h"
#ifdef __cplusplus
extern "C" {
#endif
typedef struct tskTaskControlBlock *TaskHandle_t;
typedef void (*TaskFunction_t)(void *);
BaseType_t xTaskCreate(TaskFunction_t fn, const char *const name, const uint32_t stack, void *const arg,
                       UBaseType_t prio, TaskHandle_t *const handle);
void vTaskDelay(const TickType_t ticks);
uint32_t ulTaskNotifyTake(BaseType_t clear_on_exit, TickType_t ticks);
BaseType_t xTaskNotifyGive(TaskHandle_t task);
#ifdef __cplusplus
}
#endif
