"""woolguard: protects the marketing money of brands and retailers from the wool party (羊毛党)."""

__version__ = "0.1.0"
