"""Protocol servers of the emulated plant: SunSpec Modbus TCP, OPC UA, SCPI, simulation control."""
