"""The Belgian capacity tariff watch: quarter-hour demand, month peak, 12-month average."""
