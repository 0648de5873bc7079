"""5G NR numbers that mimoc's defaults and receiver workloads are built on (one place).

A slot has 14 OFDM symbols (normal cyclic prefix) at every subcarrier spacing; the channel
is treated as constant over a slot (block fading), which is why a detector's channel
preparation runs once per slot. A resource block is 12 subcarriers; a 100 MHz carrier at
30 kHz spacing carries 273 resource blocks, 3,276 subcarriers (3GPP TS 38.101-1, Table
5.3.2-1), in slots of 0.5 ms. mimoc budgets against the 6G air-interface target of 0.1 ms
per slot.
"""

#: OFDM symbols per slot (normal cyclic prefix): the default slot length S
SLOT_SYMBOLS = 14
#: subcarriers per resource block
SUBCARRIERS_PER_RB = 12
#: resource blocks of a 100 MHz carrier at 30 kHz subcarrier spacing
RESOURCE_BLOCKS_100MHZ_30KHZ = 273
#: subcarriers of that carrier
SUBCARRIERS_100MHZ_30KHZ = RESOURCE_BLOCKS_100MHZ_30KHZ * SUBCARRIERS_PER_RB
#: slot duration at 30 kHz spacing, seconds
SLOT_S_30KHZ = 0.5e-3
#: the 6G air-interface latency target per slot, seconds
BUDGET_S_6G = 100e-6
